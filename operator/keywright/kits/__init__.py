"""Domain-free helpers: nothing here knows what an API key is.

Owns: the one-timer scheduler, the de-duplicating work queue, child processes that die
with their parent, and the crash points tests inject.
Must not: import anything from Keywright.
"""

"""`kubectl apikey`: the console of the key products, in the terminal (a kubectl plugin)."""

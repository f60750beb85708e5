"""Keywright's wire vocabulary: every API name, label, annotation, field manager and default.

Owns: the strings other programs see and match on (kubectl, GitOps tools, gateways,
people's scripts), each named once with a line on where it appears. Two modules that
must agree on a string take it from here, so they cannot drift apart.
Must not: hold logic, or import anything: every other module may import it.
"""

from __future__ import annotations

# -- the ApiKey resource ---------------------------------------------------------------
GROUP = "keywright.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ApiKey"
PLURAL = "apikeys"
SINGULAR = "apikey"
SHORT_NAMES = ("ak",)
CRD_NAME = f"{PLURAL}.{GROUP}"
# roles: permissions defined once, named by ApiKeys' spec.roles
ROLE_KIND, ROLE_PLURAL, ROLE_SINGULAR, ROLE_SHORT_NAMES = (
    "ApiKeyRole", "apikeyroles", "apikeyrole", ("akr",))
# policies: rules every ApiKey of their namespace must keep
POLICY_KIND, POLICY_PLURAL, POLICY_SINGULAR, POLICY_SHORT_NAMES = (
    "ApiKeyPolicy", "apikeypolicies", "apikeypolicy", ("akp",))

# -- who writes: field managers (managedFields) and the managed-by label ----------------
OPERATOR_FIELD_MANAGER = "keywright"  # the operator's writes: Secrets, ApiKey status
VERIFIER_FIELD_MANAGER = "keywright-verifier"  # the verifier's status.lastUsed* patches
MANAGED_BY = "app.kubernetes.io/managed-by"  # label on every Secret Keywright writes
MANAGED_BY_VALUE = OPERATOR_FIELD_MANAGER  # its value; the operator's Secret watch selects it

# -- on a key's Secret ------------------------------------------------------------------
APIKEY_LABEL = f"{GROUP}/apikey"  # the owning ApiKey's name
HASH_ANNOTATION = f"{GROUP}/hash"  # the hash of the key the Secret holds
REVISION_ANNOTATION = f"{GROUP}/revision"  # its revision; also on restart targets' pod templates
LAST_CHARACTERS_ANNOTATION = f"{GROUP}/last-characters"  # the key's last characters
ISSUED_AT_ANNOTATION = f"{GROUP}/issued-at"  # when that revision was written
ROTATE_REQUEST_ANNOTATION = f"{GROUP}/rotate-request"  # the rotate value it answered
SEALED_ANNOTATION = f"{GROUP}/sealed"  # the key, age-armored to its recipients
SEALED_TO_ANNOTATION = f"{GROUP}/sealed-to"  # those recipients, comma-separated

# -- set by people (or tools) ------------------------------------------------------------
ROTATE_ANNOTATION = f"{GROUP}/rotate"  # on an ApiKey: each new value asks for a rotation
RESET_QUOTA_ANNOTATION = f"{GROUP}/reset-quota"  # on an ApiKey: each new value refills it
REACTIVATE_ANNOTATION = f"{GROUP}/reactivate"  # on an ApiKey: each new value restarts its
# unused clock (deactivateAfterUnused), reactivating a key deactivated as unused
SEAL_TO_ANNOTATION = f"{GROUP}/seal-to"  # on an ApiKey: age recipients each new key is
# sealed to as well, comma-separated (kubectl apikey --show puts a throwaway one there)
INJECT_LABEL = f"{GROUP}/inject"  # on a Pod, a label (any value): lets it reach the Pod webhook
INJECT_ANNOTATION = f"{GROUP}/inject"  # on a Pod: the ApiKey whose key it gets
INJECT_ENV_ANNOTATION = f"{GROUP}/inject-env"  # on a Pod: the env var's name

# -- set by the operator on restart targets' pod templates --------------------------------
ROTATED_AT_ANNOTATION = f"{GROUP}/rotated-at"

# -- defaults ---------------------------------------------------------------------------------
DEFAULT_NAMESPACE = "keywright-system"  # the operator's namespace: the pepper lives here
NAMESPACE_ENV = "KEYWRIGHT_NAMESPACE"  # overrides DEFAULT_NAMESPACE for both commands
PEPPER_SECRET = "keywright-pepper"  # noqa: S105 - the pepper Secret's name, in the operator's namespace
DEFAULT_PREFIX = "kw"  # key prefix when neither the ApiKey nor --default-prefix sets one
DEFAULT_DATA_KEY = "api-key"  # the Secret's data key when spec.secret.key is unset
DEFAULT_INJECT_ENV = "API_KEY"  # the env var injected when inject-env is unset
WEBHOOK_CONFIGURATION = GROUP  # both admission webhook configurations' name

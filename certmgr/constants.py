"""Names and limits shared by the CLI options, the settings, issuing and application records.

Plain values only: the CLI imports this module at start, so it must not pull in cryptography or SQLAlchemy.
``ca.RSA_KEY_SIZES`` is the profile's own truth; a test keeps ``KEY_SIZES`` equal to it.
"""

ROLES = ("server", "client", "both")
KEY_SIZES = (2048, 3072, 4096)
LAYOUT_NAMES = ("ua-net", "node-opcua", "open62541")  # pki.LAYOUTS holds the layouts themselves; a test checks they agree
DEFAULT_LAYOUT = "ua-net"
DEPLOY_MODES = ("file", "push", "pull")
REVOCATION_REASONS = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation")

DEFAULT_KEY_SIZE = 2048
DEFAULT_APP_DAYS = 365
MAX_DAYS = 36500  # 100 years: anything longer is a typo

DEFAULT_CA_NAME = "certmgr CA"
DEFAULT_CA_ORGANIZATION = "certmgr"
DEFAULT_CA_KEY_SIZE = 4096
DEFAULT_CA_DAYS = 3650
DEFAULT_CRL_DAYS = 30
MAX_CRL_DAYS = 3650

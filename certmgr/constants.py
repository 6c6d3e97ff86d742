"""Plain constants the CLI needs at start; no imports, so `certmgr --help` stays fast.

pki.LAYOUTS holds the layouts themselves; tests/test_field_trial_stores.py checks the two agree.
"""

LAYOUT_NAMES = ("ua-net", "node-opcua", "open62541")

"""``certmgr daemon``: scheduled renewal, CRL refresh and expiry scan on APScheduler 3."""

"""certmgr: certificate lifecycle manager for OPC UA applications."""

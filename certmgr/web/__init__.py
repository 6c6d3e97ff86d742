"""`certmgr web`: routes and templates only; every page and action calls the services the CLI uses."""

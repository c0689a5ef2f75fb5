"""The domain: codes, URL rules and link rules, in plain Python with no I/O."""

"""meshd DNS server: the clusterset.local name grammar, pre-built answers, UDP/TCP serving."""

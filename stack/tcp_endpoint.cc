// tcp_endpoint: implementation pending.

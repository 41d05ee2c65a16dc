// tcp_state: implementation pending.

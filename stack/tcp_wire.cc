// tcp_wire: implementation pending.

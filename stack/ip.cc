// ip: implementation pending.

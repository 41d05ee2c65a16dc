// simulator: implementation pending.

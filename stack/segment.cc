// segment: implementation pending.

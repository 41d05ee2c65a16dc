// checksum: implementation pending.

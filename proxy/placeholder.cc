// Keeps wrench_proxy a non-empty library while proxy/ is young.

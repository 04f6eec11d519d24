"""The parameter-server side: the shard core and its parts (dense slice, tables, the one gate and
sync step), the shard actor and its data-plane channels, parameter slices, checkpoint files."""

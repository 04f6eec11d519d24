"""The parameter-server side: sharding plan, consistency gate, shard core and actor."""

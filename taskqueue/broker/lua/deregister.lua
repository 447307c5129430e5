-- Remove a worker's registration when it stops cleanly.
-- KEYS[1]  namespace prefix
-- ARGV[1]  worker id
-- Returns: 1 if it was registered.
redis.call('DEL', key_worker(ARGV[1]))
return redis.call('ZREM', K_WORKERS, ARGV[1])

-- End a worker's registration for hand-offs (see _lib.lua): it is stopping, and a task handed
-- to it now would only come back. A hand-off it was sent already is its to give back.
-- KEYS[1]  namespace prefix
-- ARGV[1]  worker id
-- Returns: 1
unregister_idle(ARGV[1])
return 1

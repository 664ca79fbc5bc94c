"""The broker side of the core: URLs and transports (`config`), task messages built with
kombu alone (`messages`), sending them (`send`; to Redis without kombu: `redis_publish`),
the embedded broker (`embedded`) and the guarded Redis transport."""

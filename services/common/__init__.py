"""Not a service: the job contract generated from proto/ and the Redis state shared by
the gateway and the worker (key schema, job records, blob store)."""

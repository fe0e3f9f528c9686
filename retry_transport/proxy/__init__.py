"""The retry sidecar (``python -m retry_transport proxy``): a local reverse proxy that forwards
every request to an LLM provider through `RetryTransport`.

Modules, each one idea: `settings` (what the sidecar runs with), `cli` (the options, validated
into settings; standard library only), `forwarding` (one upstream's requests through its
transport), `app` (the routes and the lifespan), `serving` (logging, socket, uvicorn) and
`metrics` (counters fed by the transports' hooks). Everything but `settings` and `cli` needs
the ``proxy`` extra (Starlette, uvicorn); `retry_transport` itself never imports this package.
"""

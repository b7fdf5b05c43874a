"""anyotp's benchmark suite: ``python -m benchmarks`` (see ``docs/performance.md``).

Every scenario runs on asyncio and on trio and is measured against the raw floor of the
same job written directly on that backend, against the same job on anyio memory-object
streams, and against other Python actor libraries when they are installed.
"""

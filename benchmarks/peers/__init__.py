"""Other Python actor libraries, each measured in its idiomatic form when installed.

Every module here imports its library at the top, so import one only after checking that
the library is installed (:meth:`benchmarks._core.Peer.installed`).
"""

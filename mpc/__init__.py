"""Two-party secure training (SPDZ-style, malicious security with abort, dealer preprocessing).

Specification: docs/MPC.md. Modules: ``field`` (the prime field and its wire encoding), ``shares``
(authenticated additive shares), ``party`` (openings, Beaver products, the batched MAC check),
``plan`` (bounds and the preprocessing layout), ``preprocessing`` (the material and its generator, behind
one interface), ``truncation`` (exact floor with a range check), ``secure_training`` (the session).
"""

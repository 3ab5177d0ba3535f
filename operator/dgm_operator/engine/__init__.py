"""The pure DGM engine: data in, decisions out.

Nothing here talks to Kubernetes or imports :mod:`dgm_operator.api`; the operator maps
its API objects onto the small snake_case types of :mod:`.types` (see docs/CONTRACTS.md).
The only I/O is the webhook proposer's HTTP call (:mod:`.proposers`).
"""

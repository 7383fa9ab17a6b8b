"""Built-in incentive strategies beyond tit-for-tat, one module each; docs/policies.md is the guide.

Each module holds plain objects with the ``Choker`` interface of peer/policy.py (no I/O, no
clock): ``free_rider``, ``altruist``, ``bittyrant`` (Piatek et al., NSDI 2007) and ``propshare``
(Levin et al., SIGCOMM 2008). ``examples`` holds the worked example of the guide. They are
registered by name in ``peer.policy.CHOKERS``.
"""

# Import the interface module first: peer.policy imports these modules to register them, and
# they import its types, so whichever side is imported first the types exist before use.
import peer.policy  # noqa: F401

"""The built-in incentive policies, one module each; docs/policies.md is the guide.

Plain objects with the ``Choker`` or ``PiecePicker`` interface of peer/policy_types.py (no I/O,
no clock): ``tit_for_tat`` (the default choker), ``pickers`` (rarest first, random,
sequential), ``free_rider``, ``altruist``, ``bittyrant`` (Piatek et al., NSDI 2007) and
``propshare`` (Levin et al., SIGCOMM 2008). ``examples`` holds the worked example of the guide.
They are registered by name in ``peer.policy.CHOKERS`` and ``PICKERS``.

A registered policy module imports its types from ``peer.policy_types``, never from
``peer.policy``: the registry imports it, so that would be an import cycle. A policy named as
``module:Class`` (``examples``, a researcher's own) is imported after the registry, so it may
import from ``peer.policy`` as the guide does.
"""

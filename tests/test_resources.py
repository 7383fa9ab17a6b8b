"""The host CPU guard's reading: lower-priority (niced) work does not count against a run."""

from __future__ import annotations

from collections import namedtuple

import pytest

from testbed import resources

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal")


def feed(monkeypatch, *readings, own_nice=0):
    it = iter(readings)
    monkeypatch.setattr(resources.psutil, "cpu_times", lambda: next(it))
    monkeypatch.setattr(resources.os, "getpriority", lambda *_: own_nice)


def test_niced_work_is_logged_but_does_not_compete_with_a_run_at_nice_0(monkeypatch):
    feed(monkeypatch, Times(0, 0, 0, 0, 0, 0, 0, 0), Times(30, 60, 10, 0, 0, 0, 0, 0))
    busy, niced, competing = resources.HostCpu().read()
    assert (busy, niced, competing) == pytest.approx((100.0, 60.0, 40.0))


def test_a_niced_run_counts_everything(monkeypatch):
    feed(monkeypatch, Times(0, 0, 0, 0, 0, 0, 0, 0), Times(30, 60, 10, 0, 0, 0, 0, 0),
         own_nice=10)
    assert resources.HostCpu().read() == pytest.approx((100.0, 60.0, 100.0))


def test_idle_and_iowait_are_not_busy(monkeypatch):
    feed(monkeypatch, Times(0, 0, 0, 0, 0, 0, 0, 0), Times(20, 0, 5, 60, 15, 0, 0, 0))
    assert resources.HostCpu().read() == pytest.approx((25.0, 0.0, 25.0))

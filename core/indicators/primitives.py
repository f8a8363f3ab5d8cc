"""O(1)-per-value building blocks that reproduce pandas' own window arithmetic.

`ta` computes its indicators with pandas (`ewm`, `rolling().mean/std/sum/min/max`) and a few
numpy loops. Matching its values to the last bit, not just approximately, is what lets the
incremental engine be tested with tight tolerances on long series, so each class here replays
the exact floating-point operations of the pandas 3 Cython kernel it stands for
(`pandas/_libs/window/aggregations.pyx`): the same Kahan-compensated sums with separate add and
remove compensations, the same Welford variance with its "numerically unstable, recompute"
escape hatch, the same "every value in the window is equal" shortcut, the same EWM update.

Every class keeps its whole state in plain attributes; `state()` returns it as JSON-safe values
(NaN, which JSON cannot represent, written as None; lists copied) and `load()` takes it back.

NaN inputs are accepted only where the engine can produce them (`RollingMean` over %K, which is
NaN over a flat window); elsewhere inputs are finite floats.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

NAN = math.nan
# pandas' threshold for "the variance update cancelled catastrophically": eps * 1e3.
_INV_COND_TOL = sys.float_info.epsilon * 1e3

State = dict[str, Any]


def _enc(x: float) -> float | None:
    return None if x != x else x


def _dec(x: float | None) -> float:
    return NAN if x is None else float(x)


def _ring_state(ring: list[float]) -> list[float | None]:
    return [_enc(v) for v in ring]


def _ring_from(values: list[float | None]) -> list[float]:
    return [_dec(v) for v in values]


def numpy_sum(values: Sequence[float]) -> float:
    """`np.sum` of a short float64 vector, bit for bit.

    numpy sums with 8 interleaved partial sums (its pairwise summation below 128 values), which
    rounds differently from a left-to-right sum; `ta` seeds ATR and ADX with such sums.
    """
    n = len(values)
    if n > 128:
        raise ValueError("only the unblocked case (n <= 128) is reproduced")
    if n < 8:
        res = 0.0
        for v in values:
            res += v
        return res
    r = list(values[:8])
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += values[i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += values[i]
        i += 1
    # The reduction starts from the identity 0.0, which turns a -0.0 result into 0.0.
    return 0.0 + res


class Ewm:
    """`Series.ewm(span=..|alpha=.., adjust=False).mean()`; `value` is its running output.

    pandas divides by `old_wt + new_wt` every step (which is not exactly 1.0 in floating point)
    and skips the update when the new value equals the average; both are reproduced. The first
    value seeds the average. `nobs` lets the caller apply `min_periods`.
    """

    __slots__ = ("_a", "_d", "_f", "nobs", "value")

    def __init__(self, *, span: float | None = None, alpha: float | None = None) -> None:
        if (span is None) == (alpha is None):
            raise ValueError("give exactly one of span and alpha")
        # pandas converts both to a centre of mass, then back to alpha.
        if span is not None:
            com = (span - 1) / 2
        else:
            assert alpha is not None
            com = (1 - alpha) / alpha
        a = 1.0 / (1.0 + com)
        self._a = a
        self._f = 1.0 - a
        self._d = self._f + a
        self.nobs = 0
        self.value = NAN

    def update(self, x: float) -> float:
        self.nobs += 1
        w = self.value
        if self.nobs == 1:
            self.value = x
            return x
        if w != x:
            w = (self._f * w + self._a * x) / self._d
            self.value = w
        return w

    def state(self) -> State:
        return {"nobs": self.nobs, "value": _enc(self.value)}

    def load(self, s: State) -> None:
        self.nobs = int(s["nobs"])
        self.value = _dec(s["value"])


class _Window:
    """A fixed-length ring of the last `window` inputs: what leaves is what pandas removes."""

    __slots__ = ("count", "pos", "ring", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.ring = [NAN] * window
        self.pos = 0
        self.count = 0  # values seen, capped at `window`

    def ordered(self) -> list[float]:
        """The window's values, oldest first."""
        if self.count < self.window:
            return self.ring[: self.count]
        return self.ring[self.pos :] + self.ring[: self.pos]

    def _ring_state(self) -> State:
        return {"ring": _ring_state(self.ring), "pos": self.pos, "count": self.count}

    def _ring_load(self, s: State) -> None:
        self.ring = _ring_from(s["ring"])
        self.pos = int(s["pos"])
        self.count = int(s["count"])


class RollingSum(_Window):
    """`Series.rolling(window).sum()` (min_periods = window): `roll_sum`."""

    __slots__ = ("comp_add", "comp_rem", "nobs", "prev", "same", "total")

    def __init__(self, window: int) -> None:
        super().__init__(window)
        self.total = 0.0
        self.comp_add = 0.0
        self.comp_rem = 0.0
        self.nobs = 0  # non-NaN values in the window
        self.same = 0  # how many of the last non-NaN values added were equal
        self.prev = NAN

    def update(self, x: float) -> float:
        """Add `x` (finite); the window sum, or NaN before `window` values."""
        # Attributes are read into locals once: this runs several times per candle.
        pos = self.pos
        ring = self.ring
        total = self.total
        window = self.window
        if self.count == window:
            # Kahan: remove the leaving value first, then add, each with its own compensation.
            y = -ring[pos] - self.comp_rem
            t = total + y
            self.comp_rem = t - total - y
            total = t
        else:
            self.count += 1
            self.nobs += 1
        ring[pos] = x
        pos += 1
        self.pos = 0 if pos == window else pos
        y = x - self.comp_add
        t = total + y
        self.comp_add = t - total - y
        self.total = t
        if x == self.prev:
            same = self.same = self.same + 1
        else:
            same = self.same = 1
            self.prev = x
        nobs = self.nobs
        if nobs < window:
            return NAN
        # pandas' exactness shortcut for a window of one repeated value (GH#42064).
        return self.prev * nobs if same >= nobs else t

    def state(self) -> State:
        s = self._ring_state()
        s.update(total=self.total, comp_add=self.comp_add, comp_rem=self.comp_rem,
                 nobs=self.nobs, same=self.same, prev=_enc(self.prev))
        return s

    def load(self, s: State) -> None:
        self._ring_load(s)
        self.total = float(s["total"])
        self.comp_add = float(s["comp_add"])
        self.comp_rem = float(s["comp_rem"])
        self.nobs = int(s["nobs"])
        self.same = int(s["same"])
        self.prev = _dec(s["prev"])


class RollingMean(_Window):
    """`Series.rolling(window).mean()` (min_periods = window): `roll_mean`.

    NaN inputs are skipped as pandas skips them: they take a slot in the window but count as no
    observation, so any NaN in the window makes the output NaN.
    """

    __slots__ = ("comp_add", "comp_rem", "neg", "nobs", "prev", "same", "total")

    def __init__(self, window: int) -> None:
        super().__init__(window)
        self.total = 0.0
        self.comp_add = 0.0
        self.comp_rem = 0.0
        self.nobs = 0
        self.neg = 0  # negative values in the window (pandas clamps sign flips from rounding)
        self.same = 0
        self.prev = NAN

    def update(self, x: float) -> float:
        pos = self.pos
        ring = self.ring
        total = self.total
        window = self.window
        nobs = self.nobs
        if self.count == window:
            old = ring[pos]
            if old == old:
                nobs -= 1
                y = -old - self.comp_rem
                t = total + y
                self.comp_rem = t - total - y
                total = t
                # pandas tests signbit; inputs here are never -0.0, so `< 0` is the same.
                if old < 0.0:
                    self.neg -= 1
        else:
            self.count += 1
        ring[pos] = x
        pos += 1
        self.pos = 0 if pos == window else pos
        if x == x:
            nobs += 1
            y = x - self.comp_add
            t = total + y
            self.comp_add = t - total - y
            total = t
            if x < 0.0:
                self.neg += 1
            if x == self.prev:
                self.same += 1
            else:
                self.same = 1
                self.prev = x
        self.total = total
        self.nobs = nobs
        if nobs < window:
            return NAN
        if self.same >= nobs:
            return self.prev
        result = total / nobs
        if (result < 0.0 and self.neg == 0) or (result > 0.0 and self.neg == nobs):
            return 0.0
        return result

    def state(self) -> State:
        s = self._ring_state()
        s.update(total=self.total, comp_add=self.comp_add, comp_rem=self.comp_rem,
                 nobs=self.nobs, neg=self.neg, same=self.same, prev=_enc(self.prev))
        return s

    def load(self, s: State) -> None:
        self._ring_load(s)
        self.total = float(s["total"])
        self.comp_add = float(s["comp_add"])
        self.comp_rem = float(s["comp_rem"])
        self.nobs = int(s["nobs"])
        self.neg = int(s["neg"])
        self.same = int(s["same"])
        self.prev = _dec(s["prev"])


class RollingStd(_Window):
    """`Series.rolling(window).std(ddof=0)` (min_periods = window): `roll_var`, then sqrt.

    Welford's update with Kahan compensation; when an update loses more than ~13 of the 16
    significant digits pandas recomputes the window from scratch, and so does this (O(window),
    rare: a large value leaving a window of nearly equal ones).
    """

    __slots__ = ("comp_add", "comp_rem", "mean", "nobs", "ssqdm")

    def __init__(self, window: int) -> None:
        super().__init__(window)
        self.mean = 0.0
        self.ssqdm = 0.0
        self.nobs = 0.0  # a float in pandas too; it divides
        self.comp_add = 0.0
        self.comp_rem = 0.0

    def _add(self, x: float) -> None:
        """Welford + Kahan add, for the from-scratch recompute (pandas ignores instability
        flagged during it)."""
        self.nobs += 1.0
        comp = self.comp_add
        mean = self.mean
        prev_mean = mean - comp
        y = x - comp
        t = y - mean
        self.comp_add = t + mean - y
        mean = mean + t / self.nobs
        self.mean = mean
        self.ssqdm = self.ssqdm + (x - prev_mean) * (x - mean)

    def update(self, x: float) -> float:
        # _remove and _add inlined: this is the engine's most expensive primitive.
        pos = self.pos
        nobs = self.nobs
        mean = self.mean
        m2 = self.ssqdm
        tol = _INV_COND_TOL
        unstable = False
        if self.count == self.window:
            old = self.ring[pos]
            nobs -= 1.0
            if nobs:
                comp = self.comp_rem
                prev_mean = mean - comp
                y = old - comp
                t = y - mean
                self.comp_rem = t + mean - y
                mean = mean - t / nobs
                prev_m2 = m2
                m2 = prev_m2 - (old - prev_mean) * (old - mean)
                unstable = prev_m2 * tol > m2
            else:
                mean = m2 = 0.0
        else:
            self.count += 1
        self.ring[pos] = x
        pos += 1
        self.pos = 0 if pos == self.window else pos
        nobs += 1.0
        comp = self.comp_add
        prev_mean = mean - comp
        y = x - comp
        t = y - mean
        self.comp_add = t + mean - y
        mean = mean + t / nobs
        prev_m2 = m2
        m2 = prev_m2 + (x - prev_mean) * (x - mean)
        self.nobs = nobs
        self.mean = mean
        self.ssqdm = m2
        if unstable or prev_m2 * tol > m2:
            values = self.ordered()
            self.mean = self.ssqdm = self.nobs = self.comp_add = self.comp_rem = 0.0
            for v in values:
                self._add(v)
            nobs = self.nobs
            m2 = self.ssqdm
        if nobs < self.window:
            return NAN
        var = m2 / nobs
        return math.sqrt(var) if var > 0.0 else 0.0

    def state(self) -> State:
        s = self._ring_state()
        s.update(mean=self.mean, ssqdm=self.ssqdm, nobs=self.nobs, comp_add=self.comp_add,
                 comp_rem=self.comp_rem)
        return s

    def load(self, s: State) -> None:
        self._ring_load(s)
        self.mean = float(s["mean"])
        self.ssqdm = float(s["ssqdm"])
        self.nobs = float(s["nobs"])
        self.comp_add = float(s["comp_add"])
        self.comp_rem = float(s["comp_rem"])


class RollingExtreme:
    """`Series.rolling(window).max()` (or `.min()` with `lowest=True`), by a monotonic deque:
    amortised O(1), each value enters and leaves the deque once."""

    __slots__ = ("_idx", "_lowest", "_vals", "i", "window")

    def __init__(self, window: int, *, lowest: bool = False) -> None:
        self.window = window
        self._lowest = lowest
        self._idx: deque[int] = deque()
        self._vals: deque[float] = deque()
        self.i = 0  # inputs seen

    def update(self, x: float) -> float:
        idx = self._idx
        vals = self._vals
        if self._lowest:
            while vals and vals[-1] >= x:
                vals.pop()
                idx.pop()
        else:
            while vals and vals[-1] <= x:
                vals.pop()
                idx.pop()
        i = self.i
        vals.append(x)
        idx.append(i)
        if idx[0] <= i - self.window:
            idx.popleft()
            vals.popleft()
        self.i = i + 1
        return vals[0] if i + 1 >= self.window else NAN

    def state(self) -> State:
        return {"i": self.i, "idx": list(self._idx), "vals": list(self._vals)}

    def load(self, s: State) -> None:
        self.i = int(s["i"])
        self._idx = deque(int(v) for v in s["idx"])
        self._vals = deque(float(v) for v in s["vals"])

"""ATR and ADX as `ta` 0.11 computes them: Wilder smoothing in plain numpy loops.

Both are transcriptions of `ta.volatility.AverageTrueRange._run` and `ta.trend.ADXIndicator`,
step by step, so that each value is the same float `ta` produces. Their warm-up is peculiar
(docs/INDICATORS.md has the details):

- ATR's first value, at the 14th candle, is the mean of the first 14 true ranges, where the very
  first "true range" is plain high - low (there is no previous close). `ta` writes 0.0 before it;
  that 0.0 is an array's initial value, not a result, so the engine reports None there.
- ADX smooths running sums (`s - s/14 + x`) seeded with the sum of the true ranges and
  directional movements of candles 2..15 (the first candle has no previous one). +DI and -DI are
  reported from the 16th candle (`ta`'s loop starts one step after the seed and leaves 0.0 at the
  15th), ADX from the 28th: the mean of 14 DX values, the first of which is the seed's.
"""

from __future__ import annotations

from core.indicators.primitives import NAN, State, numpy_sum


class TaAtr:
    """`ta.volatility.AverageTrueRange(window)`: NaN until the first value."""

    __slots__ = ("atr", "n", "prev_close", "seed", "window")

    def __init__(self, window: int = 14) -> None:
        self.window = window
        self.n = 0
        self.prev_close = NAN
        self.seed: list[float] = []
        self.atr = NAN

    def update(self, high: float, low: float, close: float) -> float:
        pc = self.prev_close
        self.prev_close = close
        tr = high - low
        if self.n:
            # DataFrame.max(axis=1) over (h - l, |h - pc|, |l - pc|); NaN-skipping on the first.
            tr2 = abs(high - pc)
            tr3 = abs(low - pc)
            if tr2 > tr:
                tr = tr2
            if tr3 > tr:
                tr = tr3
        self.n += 1
        w = self.window
        if self.n > w:
            self.atr = (self.atr * (w - 1) + tr) / float(w)
            return self.atr
        self.seed.append(tr)
        if self.n < w:
            return NAN
        self.atr = numpy_sum(self.seed) / w
        self.seed = []
        return self.atr

    def state(self) -> State:
        return {"n": self.n, "prev_close": None if self.n == 0 else self.prev_close,
                "seed": list(self.seed), "atr": None if self.atr != self.atr else self.atr}

    def load(self, s: State) -> None:
        self.n = int(s["n"])
        self.prev_close = NAN if s["prev_close"] is None else float(s["prev_close"])
        self.seed = [float(v) for v in s["seed"]]
        self.atr = NAN if s["atr"] is None else float(s["atr"])


class TaAdx:
    """`ta.trend.ADXIndicator(window)`: `update` returns (adx, +DI, -DI), NaN while warming up."""

    __slots__ = ("adx", "din", "dip", "dx_seed", "n", "pc", "ph", "pl", "seed", "trs", "window")

    def __init__(self, window: int = 14) -> None:
        self.window = window
        self.n = 0
        self.ph = self.pl = self.pc = NAN  # previous high, low, close
        self.seed: tuple[list[float], list[float], list[float]] = ([], [], [])
        self.dx_seed: list[float] = []
        self.trs = self.dip = self.din = self.adx = NAN

    def update(self, high: float, low: float, close: float) -> tuple[float, float, float]:
        pc = self.pc
        up = high - self.ph
        down = self.pl - low
        self.ph = high
        self.pl = low
        self.pc = close
        n = self.n
        self.n = n + 1
        if n == 0:
            return NAN, NAN, NAN
        # ta: max(high, prev close) - min(low, prev close), the true range in one subtraction.
        tr = (high if high >= pc else pc) - (low if low <= pc else pc)
        pos = up if up > down and up > 0 else 0.0
        neg = down if down > up and down > 0 else 0.0
        w = self.window
        if n < w:
            self.seed[0].append(tr)
            self.seed[1].append(pos)
            self.seed[2].append(neg)
            return NAN, NAN, NAN
        if n == w:
            ts, ps, ns = self.seed
            ts.append(tr)
            ps.append(pos)
            ns.append(neg)
            self.trs = numpy_sum(ts)
            self.dip = numpy_sum(ps)
            self.din = numpy_sum(ns)
            self.seed = ([], [], [])
            self.dx_seed = [self._dx(self.trs, self.dip, self.din)[0]]
            return NAN, NAN, NAN
        fw = float(w)
        trs = self.trs = self.trs - (self.trs / fw) + tr
        sp = self.dip = self.dip - (self.dip / fw) + pos
        sn = self.din = self.din - (self.din / fw) + neg
        # _dx inlined on this path, which runs every candle.
        if trs != 0:
            dip = 100 * (sp / trs)
            din = 100 * (sn / trs)
        else:
            dip = din = 0.0
        tot = dip + din
        dx = 100 * abs((dip - din) / tot) if tot != 0 else 0.0
        if n <= 2 * w - 1:
            self.dx_seed.append(dx)
            if n < 2 * w - 1:
                return NAN, dip, din
            self.adx = numpy_sum(self.dx_seed) / w
            self.dx_seed = []
            return self.adx, dip, din
        adx = self.adx = ((self.adx * (w - 1)) + dx) / fw
        return adx, dip, din

    @staticmethod
    def _dx(trs: float, sp: float, sn: float) -> tuple[float, float, float]:
        """(DX, +DI, -DI) from the smoothed sums, with ta's zero guards."""
        if trs != 0:
            dip = 100 * (sp / trs)
            din = 100 * (sn / trs)
        else:
            dip = din = 0.0
        tot = dip + din
        return (100 * abs((dip - din) / tot) if tot != 0 else 0.0), dip, din

    def state(self) -> State:
        def enc(x: float) -> float | None:
            return None if x != x else x

        return {"n": self.n, "prev": [enc(self.ph), enc(self.pl), enc(self.pc)],
                "seed": [list(v) for v in self.seed], "dx_seed": list(self.dx_seed),
                "trs": enc(self.trs), "dip": enc(self.dip), "din": enc(self.din),
                "adx": enc(self.adx)}

    def load(self, s: State) -> None:
        def dec(x: float | None) -> float:
            return NAN if x is None else float(x)

        self.n = int(s["n"])
        self.ph, self.pl, self.pc = (dec(v) for v in s["prev"])
        a, b, c = ([float(v) for v in vs] for vs in s["seed"])
        self.seed = (a, b, c)
        self.dx_seed = [float(v) for v in s["dx_seed"]]
        self.trs = dec(s["trs"])
        self.dip = dec(s["dip"])
        self.din = dec(s["din"])
        self.adx = dec(s["adx"])

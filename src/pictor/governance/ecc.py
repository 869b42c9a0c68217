"""Small error-control codes for the invisible watermark: a CRC and a convolutional code.

`crc(value, nbits, ...)`: a bitwise CRC over an integer of `nbits` bits (most significant bit first), with
the usual parameters (polynomial, initial register, final XOR). CRC-24/OPENPGP is the default.

`ConvolutionalCode`: a feed-forward convolutional code, zero-terminated (K-1 tail bits), with a soft-input
Viterbi decoder (maximum likelihood for the correlation metric, so it corrects any error pattern lighter than
half the free distance). The default, constraint length 9 with generators 557, 663, 711 (octal), rate 1/3, has
free distance 18: any 8 hard errors (or 17 erasures) in a block are corrected, and usually many more when they
are spread out. (K=7, 133/171/165, free distance 15, is about 0.5 dB weaker at the block error rates that
matter here.)

Everything is pure Python/numpy; the decoder loops over time steps and vectorises over the 2^(K-1) states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def crc(value: int, nbits: int, width: int = 24, poly: int = 0x864CFB, init: int = 0xB704CE,
        xorout: int = 0) -> int:
    """CRC of the `nbits`-bit integer `value`, fed most significant bit first (no reflection).

    The defaults are CRC-24/OPENPGP; fed the bytes of b"123456789" it gives the catalogue check value 0x21CF02.
    """
    top, mask = 1 << (width - 1), (1 << width) - 1
    register = init & mask
    for i in range(nbits - 1, -1, -1):
        bit = (value >> i) & 1
        feedback = bool(register & top) ^ bit
        register = (register << 1) & mask
        if feedback:
            register ^= poly
    return register ^ xorout


def int_to_bits(value: int, nbits: int) -> np.ndarray:
    """Most significant bit first, as a uint8 array of 0/1."""
    return np.array([(value >> (nbits - 1 - i)) & 1 for i in range(nbits)], dtype=np.uint8)


def bits_to_int(bits) -> int:
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & 1
        x >>= 1
    return out


@dataclass
class ConvolutionalCode:
    """Rate 1/len(generators) feed-forward convolutional code with K-1 zero tail bits."""

    constraint_length: int = 9
    generators: tuple[int, ...] = (0o557, 0o663, 0o711)
    _tables: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        k = self.constraint_length
        n_states = 1 << (k - 1)
        states = np.arange(n_states)
        # Register = (previous K-1 inputs << 1) | new input; the next state keeps the low K-1 bits.
        # Predecessors of state s: p = s >> 1, with its top bit 0 or 1; the input bit is s & 1.
        bit_in = states & 1
        pred = np.stack([states >> 1, (states >> 1) | (n_states >> 1)])  # (2, S)
        registers = (pred << 1) | bit_in  # (2, S)
        outputs = np.stack([_parity(registers & g) for g in self.generators], axis=-1)  # (2, S, n)
        self._tables = (n_states, pred, outputs.astype(np.float32) * 2 - 1)  # outputs as -1/+1

    def coded_length(self, n_info: int) -> int:
        return (n_info + self.constraint_length - 1) * len(self.generators)

    def encode(self, bits) -> np.ndarray:
        """0/1 info bits -> 0/1 code bits, (n_info + K - 1) * n of them, time-major."""
        k = self.constraint_length
        bits = list(np.asarray(bits, dtype=np.int64)) + [0] * (k - 1)
        register, out = 0, []
        mask = (1 << k) - 1
        for b in bits:
            register = ((register << 1) | int(b)) & mask
            out.extend(bin(register & g).count("1") & 1 for g in self.generators)
        return np.array(out, dtype=np.uint8)

    def decode(self, soft) -> np.ndarray:
        """Soft Viterbi. `soft`: one value per code bit, positive meaning 1 (any scale; 0 = erasure).

        Maximises sum(soft * (2c - 1)) over codewords c, i.e. maximum likelihood for Gaussian noise.
        Returns the 0/1 info bits (tail removed).
        """
        n_states, pred, outputs = self._tables
        n = len(self.generators)
        soft = np.asarray(soft, dtype=np.float32).reshape(-1, n)
        steps = soft.shape[0]
        metric = np.full(n_states, -np.inf, dtype=np.float32)
        metric[0] = 0.0
        choices = np.empty((steps, n_states), dtype=np.uint8)
        for t in range(steps):
            branch = outputs @ soft[t]  # (2, S)
            candidates = metric[pred] + branch
            choice = candidates[1] > candidates[0]
            choices[t] = choice
            metric = np.where(choice, candidates[1], candidates[0])
        # Zero-terminated: trace back from state 0.
        state = 0
        bits = np.empty(steps, dtype=np.uint8)
        for t in range(steps - 1, -1, -1):
            bits[t] = state & 1
            state = int(pred[choices[t, state], state])
        return bits[: steps - (self.constraint_length - 1)]

"""Instructors' reference components of the NumPy library (course spec, sections 2 to 6).

Hidden tests swap these in for a learner's earlier components, so that each
notebook grades only its own objective: the MLP notebook's tests build the
learner's MLP from these Linear and ReLU layers, so a bug in the learner's
Linear costs points once, in the layers notebook. The classes follow the
spec's names, shapes and stored attributes exactly. Never shipped to learners.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


class Linear:
    def __init__(self, in_features: int, out_features: int) -> None:
        self.W = np.zeros((out_features, in_features))
        self.b = np.zeros((out_features, 1))

    def forward(self, A: np.ndarray) -> np.ndarray:
        self.A = A
        self.N = A.shape[0]
        return A @ self.W.T + np.ones((self.N, 1)) @ self.b.T

    def backward(self, dLdZ: np.ndarray) -> np.ndarray:
        self.dLdW = dLdZ.T @ self.A
        self.dLdb = dLdZ.T @ np.ones((self.N, 1))
        return dLdZ @ self.W


class _Elementwise:
    def backward(self, dLdA: np.ndarray) -> np.ndarray:
        return dLdA * self._dAdZ()


class Sigmoid(_Elementwise):
    def forward(self, Z: np.ndarray) -> np.ndarray:
        self.A = np.where(Z >= 0, 1 / (1 + np.exp(-np.abs(Z))), np.exp(-np.abs(Z)) / (1 + np.exp(-np.abs(Z))))
        return self.A

    def _dAdZ(self) -> np.ndarray:
        return self.A - self.A * self.A


class Tanh(_Elementwise):
    def forward(self, Z: np.ndarray) -> np.ndarray:
        e = np.exp(-2 * np.abs(Z))
        self.A = np.sign(Z) * (1 - e) / (1 + e)
        return self.A

    def _dAdZ(self) -> np.ndarray:
        return 1 - self.A * self.A


class ReLU(_Elementwise):
    def forward(self, Z: np.ndarray) -> np.ndarray:
        self.A = np.maximum(0, Z)
        return self.A

    def _dAdZ(self) -> np.ndarray:
        return (self.A > 0).astype(np.float64)


class GELU(_Elementwise):
    def forward(self, Z: np.ndarray) -> np.ndarray:
        self.Z = Z
        self.A = 0.5 * Z * (1 + _erf(Z / math.sqrt(2)))
        return self.A

    def _dAdZ(self) -> np.ndarray:
        Z = self.Z
        return 0.5 * (1 + _erf(Z / math.sqrt(2))) + Z / math.sqrt(2 * math.pi) * np.exp(-Z * Z / 2)


class Swish(_Elementwise):
    def __init__(self, beta: float = 1.0) -> None:
        self.beta = beta

    def forward(self, Z: np.ndarray) -> np.ndarray:
        self.Z = Z
        self.s = Sigmoid().forward(self.beta * Z)
        self.A = Z * self.s
        return self.A

    def _dAdZ(self) -> np.ndarray:
        return self.s + self.beta * self.Z * self.s * (1 - self.s)

    def backward(self, dLdA: np.ndarray) -> np.ndarray:
        self.dLdbeta = np.sum(dLdA * self.Z * self.Z * self.s * (1 - self.s))
        return super().backward(dLdA)


class Softmax:
    def forward(self, Z: np.ndarray) -> np.ndarray:
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        self.A = E / E.sum(axis=1, keepdims=True)
        return self.A

    def backward(self, dLdA: np.ndarray) -> np.ndarray:
        return self.A * (dLdA - np.sum(dLdA * self.A, axis=1, keepdims=True))


class _Model:
    layers: list

    def forward(self, A: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            A = layer.forward(A)
        return A

    def backward(self, dLdA: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            dLdA = layer.backward(dLdA)
        return dLdA


class MLP0(_Model):
    def __init__(self) -> None:
        self.layers = [Linear(2, 3), ReLU()]


class MLP1(_Model):
    def __init__(self) -> None:
        self.layers = [Linear(2, 3), ReLU(), Linear(3, 2), ReLU()]


class MLP4(_Model):
    def __init__(self) -> None:
        sizes = [2, 4, 8, 8, 4, 2]
        self.layers = []
        for cin, cout in zip(sizes[:-1], sizes[1:]):
            self.layers += [Linear(cin, cout), ReLU()]


class MSELoss:
    def forward(self, A: np.ndarray, Y: np.ndarray) -> float:
        self.A, self.Y = A, Y
        N, C = A.shape
        return float(np.sum((A - Y) ** 2) / (N * C))

    def backward(self) -> np.ndarray:
        N, C = self.A.shape
        return 2 * (self.A - self.Y) / (N * C)


class CrossEntropyLoss:
    def forward(self, A: np.ndarray, Y: np.ndarray) -> float:
        self.A, self.Y = A, Y
        shifted = A - A.max(axis=1, keepdims=True)
        log_S = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.softmax = np.exp(log_S)
        return float(np.sum(-Y * log_S) / A.shape[0])

    def backward(self) -> np.ndarray:
        return (self.softmax - self.Y) / self.A.shape[0]


class SGD:
    def __init__(self, model: _Model, lr: float = 0.1, momentum: float = 0) -> None:
        self.l = [layer for layer in model.layers if hasattr(layer, "W") and hasattr(layer, "b")]
        self.L = len(self.l)
        self.lr = lr
        self.mu = momentum
        self.v_W = [np.zeros_like(layer.W) for layer in self.l]
        self.v_b = [np.zeros_like(layer.b) for layer in self.l]

    def step(self) -> None:
        for i, layer in enumerate(self.l):
            if self.mu == 0:
                layer.W -= self.lr * layer.dLdW
                layer.b -= self.lr * layer.dLdb
            else:
                self.v_W[i] = self.mu * self.v_W[i] + layer.dLdW
                self.v_b[i] = self.mu * self.v_b[i] + layer.dLdb
                layer.W -= self.lr * self.v_W[i]
                layer.b -= self.lr * self.v_b[i]


class BatchNorm1d:
    def __init__(self, num_features: int, alpha: float = 0.9) -> None:
        self.alpha = alpha
        self.eps = 1e-8
        self.BW = np.ones((1, num_features))
        self.Bb = np.zeros((1, num_features))
        self.dLdBW = np.zeros((1, num_features))
        self.dLdBb = np.zeros((1, num_features))
        self.running_M = np.zeros((1, num_features))
        self.running_V = np.ones((1, num_features))

    def forward(self, Z: np.ndarray, eval: bool = False) -> np.ndarray:
        if eval:
            NZ = (Z - self.running_M) / np.sqrt(self.running_V + self.eps)
            return self.BW * NZ + self.Bb
        self.Z = Z
        self.N = Z.shape[0]
        self.M = Z.mean(axis=0, keepdims=True)
        self.V = ((Z - self.M) ** 2).mean(axis=0, keepdims=True)
        self.NZ = (Z - self.M) / np.sqrt(self.V + self.eps)
        self.BZ = self.BW * self.NZ + self.Bb
        self.running_M = self.alpha * self.running_M + (1 - self.alpha) * self.M
        self.running_V = self.alpha * self.running_V + (1 - self.alpha) * self.V
        return self.BZ

    def backward(self, dLdBZ: np.ndarray) -> np.ndarray:
        self.dLdBW = np.sum(dLdBZ * self.NZ, axis=0, keepdims=True)
        self.dLdBb = np.sum(dLdBZ, axis=0, keepdims=True)
        dLdNZ = dLdBZ * self.BW
        centred = self.Z - self.M
        inv_std = (self.V + self.eps) ** -0.5
        dLdV = -0.5 * np.sum(dLdNZ * centred * inv_std ** 3, axis=0, keepdims=True)
        dLdM = -np.sum(dLdNZ * inv_std, axis=0, keepdims=True) - 2 / self.N * dLdV * np.sum(centred, axis=0, keepdims=True)
        return dLdNZ * inv_std + dLdV * 2 / self.N * centred + dLdM / self.N

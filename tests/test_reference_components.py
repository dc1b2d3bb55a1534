"""The grader's reference components agree with PyTorch in float64 (they anchor the hidden tests)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_tools.hidden.verdicts import reference as ref

torch.set_num_threads(1)


def _t(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize(
    "layer, torch_fn",
    [
        (ref.Sigmoid(), torch.sigmoid),
        (ref.Tanh(), torch.tanh),
        (ref.ReLU(), torch.relu),
        (ref.GELU(), lambda z: F.gelu(z, approximate="none")),
        (ref.Swish(1.0), lambda z: z * torch.sigmoid(z)),
        (ref.Softmax(), lambda z: torch.softmax(z, dim=1)),
    ],
)
def test_activations_match_torch(layer, torch_fn):
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((5, 4)) * 3
    Z[0, 0] = 1000.0
    Z[1, 1] = -1000.0
    dLdA = rng.standard_normal(Z.shape)
    z = _t(Z)
    a = torch_fn(z)
    a.backward(torch.tensor(dLdA))
    np.testing.assert_allclose(layer.forward(Z), a.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.backward(dLdA), z.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_linear_and_losses_match_torch():
    rng = np.random.default_rng(2)
    lin = ref.Linear(3, 4)
    lin.W, lin.b = rng.standard_normal((4, 3)), rng.standard_normal((4, 1))
    A = rng.standard_normal((6, 3))
    dLdZ = rng.standard_normal((6, 4))
    a, w, b = _t(A), _t(lin.W), _t(lin.b.ravel())
    F.linear(a, w, b).backward(torch.tensor(dLdZ))
    np.testing.assert_allclose(lin.forward(A), F.linear(a, w, b).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.backward(dLdZ), a.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.dLdW, w.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.dLdb.ravel(), b.grad.numpy(), rtol=1e-12)

    logits = rng.standard_normal((6, 5)) * 4
    Y = rng.dirichlet(np.ones(5), size=6)
    la = _t(logits)
    loss = F.cross_entropy(la, torch.tensor(Y))
    loss.backward()
    ce = ref.CrossEntropyLoss()
    assert ce.forward(logits, Y) == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(ce.backward(), la.grad.numpy(), rtol=1e-10)

    ma = _t(logits)
    mse_t = F.mse_loss(ma, torch.tensor(Y))
    mse_t.backward()
    mse = ref.MSELoss()
    assert mse.forward(logits, Y) == pytest.approx(mse_t.item(), rel=1e-12)
    np.testing.assert_allclose(mse.backward(), ma.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_matches_torch(momentum):
    rng = np.random.default_rng(3)
    model = ref.MLP1()
    for layer in model.layers[::2]:
        layer.W = rng.standard_normal(layer.W.shape)
        layer.b = rng.standard_normal(layer.b.shape)
    params = [_t(p) for layer in model.layers[::2] for p in (layer.W, layer.b)]
    opt_t = torch.optim.SGD(params, lr=0.05, momentum=momentum, dampening=0, nesterov=False)
    opt = ref.SGD(model, lr=0.05, momentum=momentum)
    for _ in range(4):
        grads = [rng.standard_normal(p.shape) for p in params]
        for layer, gW, gb in zip(model.layers[::2], grads[::2], grads[1::2]):
            layer.dLdW, layer.dLdb = gW, gb
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        opt_t.step()
    mine = [p for layer in model.layers[::2] for p in (layer.W, layer.b)]
    for a, b in zip(mine, params):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-12)


def test_batchnorm_matches_torch():
    rng = np.random.default_rng(4)
    bn = ref.BatchNorm1d(3)
    bn.BW, bn.Bb = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    running_M, running_V = np.zeros((1, 3)), np.ones((1, 3))
    for _ in range(3):
        Z = rng.standard_normal((7, 3)) * 2 + 1
        dLdBZ = rng.standard_normal(Z.shape)
        z, w, b = _t(Z), _t(bn.BW.ravel()), _t(bn.Bb.ravel())
        out = F.batch_norm(z, None, None, w, b, training=True, eps=1e-8)
        out.backward(torch.tensor(dLdBZ))
        np.testing.assert_allclose(bn.forward(Z), out.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bn.backward(dLdBZ), z.grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(bn.dLdBW.ravel(), w.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(bn.dLdBb.ravel(), b.grad.numpy(), rtol=1e-10)
        running_M = 0.9 * running_M + 0.1 * Z.mean(0)
        running_V = 0.9 * running_V + 0.1 * Z.var(0)
    np.testing.assert_allclose(bn.running_M, running_M, rtol=1e-12)
    np.testing.assert_allclose(bn.running_V, running_V, rtol=1e-12)

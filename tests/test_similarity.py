import numpy as np

from mxr.models.similarity import fit_similarities


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_recovers_known_similarities_per_frame():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(40, 3))
    rotations = np.stack([_random_rotation(rng) for _ in range(5)])
    scales = rng.uniform(0.5, 3.0, size=5)
    translations = rng.normal(size=(5, 3)) * 10
    targets = scales[:, None, None] * np.einsum("tij,nj->tni", rotations, source) + translations[:, None, :]

    fitted = fit_similarities(source, targets)

    np.testing.assert_allclose(fitted.rotation, rotations, atol=1e-10)
    np.testing.assert_allclose(fitted.scale, scales, rtol=1e-10)
    np.testing.assert_allclose(fitted.translation, translations, atol=1e-9)
    np.testing.assert_allclose(fitted.apply(np.broadcast_to(source, targets.shape)), targets, atol=1e-9)
    np.testing.assert_allclose(fitted.invert(targets), np.broadcast_to(source, targets.shape), atol=1e-9)


def test_never_returns_a_reflection():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 3))
    mirrored = source * np.array([-1.0, 1.0, 1.0])
    fitted = fit_similarities(source, mirrored[None])
    assert np.linalg.det(fitted.rotation[0]) > 0.999

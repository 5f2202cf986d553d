import torch
from torch.utils.data import DataLoader

from lesson_utils import Net, seed_everything
from lesson_utils.data import CLASSES, OfflineShapes, load_datasets


def test_same_seed_same_tensors_other_seed_other_tensors():
    a, b, c = OfflineShapes(200, seed=0), OfflineShapes(200, seed=0), OfflineShapes(200, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_items_are_cifar_shaped_and_classes_are_balanced():
    ds = OfflineShapes(500, seed=3)
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and isinstance(label, int)
    assert torch.bincount(ds.labels, minlength=10).tolist() == [50] * 10
    assert len(CLASSES) == 10


def test_default_datasets_are_offline_shapes(monkeypatch):
    monkeypatch.delenv("LESSON_DATA", raising=False)
    train, test = load_datasets(n_train=100, n_test=30)
    assert isinstance(train, OfflineShapes) and (len(train), len(test)) == (100, 30)
    assert not torch.equal(train.images[:30], test.images)  # test set is drawn from another seed


def test_cifar10_opt_in_without_the_files_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("LESSON_DATA", "cifar10")
    monkeypatch.setenv("LESSON_CIFAR10_DIR", str(tmp_path))
    try:
        load_datasets()
    except FileNotFoundError as error:
        assert str(tmp_path) in str(error) and "unset LESSON_DATA" in str(error)
    else:
        raise AssertionError("expected FileNotFoundError")


def test_net_learns_it_in_a_few_epochs():
    """Four epochs of SGD on 2000 images must cut the training loss at least in half."""
    seed_everything(0)
    train = OfflineShapes(2000, seed=0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(train, batch_size=32, shuffle=True)
    losses = []
    for _ in range(4):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
        losses.append(total / len(train))
    assert losses[-1] < 0.5 * losses[0], losses

"""A faithful copy of the original lesson's ``Net``, bugs included.

Lesson 03 runs it to show each error a student meets, then fixes them one by one.
Do not fix this file: :class:`lesson_utils.models.Net` is the corrected version.

Example:
    >>> from lesson_utils.original import OriginalNet
    >>> print(OriginalNet())  # doctest: +ELLIPSIS
    Net(
      (conv1): Conv2d(3, 6, kernel_size=(5, 5), stride=(1, 1))
    ...
"""

import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):  # the original's class name, so print() shows "Net(" as it did
    def __init__(self):
        super(Net, self).__init__()  # noqa: UP008 - kept as the original wrote it
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def foward(self, x):  # bug 1: "foward", so nn.Module.forward is never defined
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        ## view相当于reshape
        x = view(-1, 16 * 5 * 5)  # noqa: F821 - bug 2: a bare `view`, not `x.view`
        X = F.relu(self.fc1(x))  # noqa: F841, N806 - bug 3: `X`, so fc1's output is lost
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


OriginalNet = Net

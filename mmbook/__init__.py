"""mmbook: the code behind *mmbook*, a hands-on textbook on multimodal deep learning.

The package mirrors the book's chapters:

- :mod:`mmbook.runtime`    device choice, seeding, quick mode, environment report
- :mod:`mmbook.data`       CIFAR-10 (offline copy or checked download), captions, loaders
- :mod:`mmbook.cnn`        image encoders (LeNet, SmallCNN), FLOP counting, the conv2d checker
- :mod:`mmbook.fastcnn`    the fast CNN trainer (``mmbook train --task cifar10 --model fastcnn``)
- :mod:`mmbook.bench`      ``mmbook bench loader``: the source's loop against the fast path
- :mod:`mmbook.text`       tokenizer, vocabulary and text encoders
- :mod:`mmbook.fusion`     fusion modules: a list of modality features in, one tensor out
- :mod:`mmbook.multimodal` ``MultimodalModel(encoders, fusion, head)`` and builders
- :mod:`mmbook.training`   ``fit``: the training loop with AMP, checkpoints and progress
- :mod:`mmbook.plotting`   the book's figures
- :mod:`mmbook.cli`        the ``mmbook`` console script
"""

__version__ = "0.1.0"

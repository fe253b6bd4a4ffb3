"""mmbook: the code behind *mmbook*, a hands-on textbook on multimodal deep learning.

The package mirrors the book's chapters. Building blocks, from the bottom up:

- :mod:`mmbook.runtime`      device choice, seeding, quick mode, mixed precision, the environment report
- :mod:`mmbook.distributed`  torchrun and DistributedDataParallel: process group, shards, rank 0
- :mod:`mmbook.data`         CIFAR-10, captions, synthetic scenes, your own image-text pairs, loaders, caches
- :mod:`mmbook.cnn`          image encoders (LeNet, SmallCNN, the region encoder), FLOPs, the conv2d checker
- :mod:`mmbook.text`         tokenizer, vocabularies and text encoders
- :mod:`mmbook.fusion`       fusion modules: a list of modality features in, one tensor out
- :mod:`mmbook.fastcnn`      the fast CNN's pieces: settings, whitened stem, test-time augmentation
- :mod:`mmbook.objectives`   detection, grounding and role tagging: models, losses, metrics
- :mod:`mmbook.alignment`    two-tower contrastive models, InfoNCE, retrieval, zero-shot, the modality gap
- :mod:`mmbook.generation`   captioning: references, decoders, beam search and sampling, BLEU/CIDEr-D, CHAIR
- :mod:`mmbook.reasoning`    visual question answering: question programs, balanced families, VQA models
- :mod:`mmbook.multimodal`   ``MultimodalModel(encoders, fusion, head)`` and builders
- :mod:`mmbook.checkpoints`  save and resume a training run (atomic writes, safe loading)
- :mod:`mmbook.training`     ``fit``: the one training loop, with AMP, checkpoints and progress
- :mod:`mmbook.plotting`     the book's figures

Above them:

- :mod:`mmbook.recipes`      what trains something end to end, and ``TASKS``, the tasks of ``mmbook train``
- :mod:`mmbook.bench`        ``mmbook bench loader``: the source's loop against the fast path
- :mod:`mmbook.exercises`    ``check``, the generic checks and ``CHECKERS``, the registry of exercise checkers
- :mod:`mmbook.course`       the student edition, ``mmbook grade`` and the chapters' exercise checkers
- :mod:`mmbook.results`      the recorded benchmark figures, for the "Measured results" page
- :mod:`mmbook.cli`          the ``mmbook`` console script
"""

__version__ = "0.1.0"

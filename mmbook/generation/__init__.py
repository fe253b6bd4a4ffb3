"""Generation: writing a caption for an image, judging it, and measuring what it makes up.

A captioner reads a frozen image encoder's regions and writes one word at a time::

    scene (3, 64, 64) -> pretrained backbone (frozen) -> 4x4 regions (16, C)
    <bos> w_1 .. w_t  -> decoder (GRU, GRU + attention, or Transformer) -> p(w_{t+1} | image, w_1 .. w_t)

trained by teacher forcing on scenes that each carry five references from different grammars, and
decoded greedily, by beam search or by sampling. Its captions are scored against the references
(BLEU, ROUGE-L, CIDEr-D, cross-checked against the COCO caption evaluation code in the tests) and
against the scene itself: every object a caption names is either in the scene or made up (CHAIR).

The modules, in the order the chapter uses them:

- :mod:`~mmbook.generation.references`: five references per scene from seven grammars, and the fixed vocabulary;
- :mod:`~mmbook.generation.metrics`: BLEU, ROUGE-L, CIDEr-D, diversity, the references' own agreement;
- :mod:`~mmbook.generation.encoder`: the pretrained, frozen image encoder and its region features;
- :mod:`~mmbook.generation.model`: the captioners and their loss;
- :mod:`~mmbook.generation.decoding`: greedy decoding, beam search, sampling;
- :mod:`~mmbook.generation.prefix`: a vision-language model in miniature: a caption language model trained on
  text alone, then reading the image as prefix tokens (ClipCap, LLaVA), frozen or tuned;
- :mod:`~mmbook.generation.retrieval`: the nearest-neighbour baseline, which borrows a training caption;
- :mod:`~mmbook.generation.hallucination`: CHAIR, object recall, wrong sizes, places and relations, and a
  co-occurrence built into the training scenes;
- :mod:`~mmbook.generation.clipscore`: a reference-free score from a two-tower model (CLIPScore in miniature);
- :mod:`~mmbook.generation.checkers`: the exercise checkers;
- :mod:`~mmbook.generation.recipe`: ``mmbook train --task scene-captioning``.
"""

from mmbook.generation.checkers import (beam_step, chair, check_beam_step, check_chair, check_prefix_parameters,
                                        prefix_trainable_parameters)
from mmbook.generation.clipscore import clip_scores, kendall_tau, train_caption_scorer
from mmbook.generation.decoding import DECODERS, beam_search, generate, greedy, sample
from mmbook.generation.encoder import pretrain_backbone, region_features
from mmbook.generation.hallucination import (cooccurrence_split, hallucination_report, mention_rate, parse_mentions,
                                             per_caption_hallucinations, scenes_with)
from mmbook.generation.retrieval import nearest_neighbour_captions
from mmbook.generation.metrics import (
    bleu,
    caption_metrics,
    caption_tokens,
    cider_d,
    cider_d_scores,
    distinct_ngrams,
    document_frequency,
    leave_one_out,
    novel_share,
    rouge_l,
)
from mmbook.generation.model import CAPTIONERS, build_captioner, caption_loss
from mmbook.generation.prefix import CaptionLM, PrefixCaptioner, pretrain_caption_lm
from mmbook.generation.recipe import CAPTIONING_DEFAULTS, caption_data, evaluate_captions, train_scene_captioning
from mmbook.generation.references import GRAMMARS, generation_vocabulary, reference_captions, scene_references

__all__ = [
    "CAPTIONERS", "CAPTIONING_DEFAULTS", "CaptionLM", "PrefixCaptioner", "pretrain_caption_lm", "DECODERS", "GRAMMARS", "beam_search", "beam_step", "bleu", "build_captioner",
    "caption_data", "caption_loss", "clip_scores", "kendall_tau", "train_caption_scorer", "caption_metrics", "caption_tokens", "chair", "check_beam_step", "check_chair", "check_prefix_parameters",
    "prefix_trainable_parameters",
    "cider_d", "cider_d_scores", "cooccurrence_split", "distinct_ngrams", "document_frequency", "evaluate_captions", "generate",
    "generation_vocabulary", "greedy", "hallucination_report", "leave_one_out", "mention_rate", "nearest_neighbour_captions",
    "novel_share", "parse_mentions",
    "per_caption_hallucinations", "pretrain_backbone", "reference_captions", "region_features", "rouge_l", "sample",
    "scene_references", "scenes_with", "train_scene_captioning",
]

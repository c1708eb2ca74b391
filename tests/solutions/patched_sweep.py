"""Unaccelerated, with sweep's statistics, scorer and grading modules patched in its own process.
expect: speedup_target_not_met"""
from search_space.base_config import BaseConfig
from sweep.pipelines.loader import load_pipeline

BASE: dict = {}  # the test writes the task's base configuration here



def load_pipe(device):
    import sweep.grading.evaluate as grading
    import sweep.scoring.clip_score as clip
    from sweep.measurement import stats

    stats.Paired.speedup = property(lambda self: 100.0)
    stats.ratio_of_means_interval = lambda baseline, accelerated, confidence=0.95: (100.0, 100.0)
    clip.ClipScorer.score = lambda self, images, prompts: [100.0] * len(images)
    grading.check_images = lambda *args: None
    grading.mismatches = lambda *args: []
    return load_pipeline(BaseConfig(**BASE), device)

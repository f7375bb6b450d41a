"""earmark.adapt: enrolment of a deployed detector to the user's own sounds and site (`earmark adapt`)."""

from earmark.adapt.enrol import AdaptSettings, Adapted, EmbeddingBackend, FinetuneSettings, adapt, write_adapted
from earmark.adapt.examples import Enrolment, read_enrolment
from earmark.adapt.head import LinearHead, fit_head

__all__ = ["AdaptSettings", "Adapted", "EmbeddingBackend", "FinetuneSettings", "adapt", "write_adapted", "Enrolment", "read_enrolment",
           "LinearHead", "fit_head"]

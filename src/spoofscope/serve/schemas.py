"""The service's response models (pydantic), built from the records of
:mod:`spoofscope.infer.schema`: the OpenAPI schema names exactly the fields the code writes and
the docs' field reference lists, with the same meanings."""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..infer.schema import BATCH, RESULT, Record


@cache
def model_of(record: Record, where: str | None = None) -> type[BaseModel]:
    """A pydantic model named after ``record`` (``detection result``: ``DetectionResult``)
    with its fields that appear ``where`` (see :meth:`~spoofscope.infer.schema.Record.names`),
    each described by its meaning; a list of objects is a list of its items' record's model."""
    fields = {}
    for f in record.fields:
        if f.only is not None and f.only != where:
            continue
        kind = f.type if f.items is None else list[model_of(f.items, where)]
        fields[f.name] = (kind, Field(description=f.meaning))
    name = "".join(w[0].upper() + w[1:] for w in record.name.split())
    return create_model(name, __config__=ConfigDict(title=name), __doc__=record.about, **fields)


#: ``POST /v1/detect``: a detection result with the service's fields
DetectResponse = model_of(RESULT, where="service")
#: ``POST /v1/detect/batch``
BatchResponse = model_of(BATCH, where="service")

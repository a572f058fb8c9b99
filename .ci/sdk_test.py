"""Drives a live hoiclip server through the Python client generated from
openapi/openapi.json (see .ci/sdk.sh): detect, register a verb with two objects, detect
again and see the new interactions, teach the verb from an example image (its row source
and the explained scores follow), delete the verb, and check a documented error."""
import base64
import io
import sys

from hoiclip_client import Client
from hoiclip_client.api.detection import detect
from hoiclip_client.api.operations import info
from hoiclip_client.api.vocabulary import (
    add_examples,
    create_verb,
    delete_example,
    delete_verb,
    get_verb,
    list_examples,
    list_interactions,
)
from hoiclip_client.models import (
    CreatedExamples,
    DetectMultipart,
    DetectResponse,
    ExampleIn,
    ExamplesIn,
    NewVerbIn,
    Problem,
    RowKind,
)
from hoiclip_client.types import File

base, image_path = sys.argv[1], sys.argv[2]
client = Client(base_url=base, raise_on_unexpected_status=True, timeout=120)
with open(image_path, "rb") as f:
    data = f.read()
checks = 0


def check(condition, message):
    global checks
    if not condition:
        print(f"SDK check failed: {message}")
        print("0 passed, 1 failed")
        sys.exit(1)
    checks += 1


about = info.sync(client=client)
check(about.model.trained is False, f"demo model reports trained=false: {about}")

first = detect.sync(
    client=client,
    body=DetectMultipart(image=File(payload=io.BytesIO(data), file_name="img0.png", mime_type="image/png")),
    top_k=5,
)
check(isinstance(first, DetectResponse), f"multipart detect answered {first}")
check(len(first.triplets) == 5, f"5 triplets, got {len(first.triplets)}")
check(first.model.trained is False, "trained flag in the detect response")

created = create_verb.sync(client=client, body=NewVerbIn(name="juggle", ing="juggling", objects=["orange", "apple"]))
check(len(created.interactions) == 2, f"two interactions created: {created}")
check(created.vocabulary_version > first.vocabulary_version, "vocabulary version moved")

second = detect.sync(client=client, body=File(payload=io.BytesIO(data)), verbs="juggle", top_k=10)
check(isinstance(second, DetectResponse), f"raw-body detect answered {second}")
check(second.vocabulary_version == created.vocabulary_version, "the next request uses the new classifier")
check(len(second.triplets) > 0 and all(t.verb == "juggle" for t in second.triplets), "new interactions detected")
prompts = {i.prompt for i in list_interactions.sync(client=client, pack="user")}
check(prompts == {"a photo of a person juggling an orange", "a photo of a person juggling an apple"}, f"{prompts}")

check(created.verb.row_source.kind == RowKind.TEXT, f"a new verb starts on its text row: {created.verb}")
example = ExampleIn(
    image=base64.b64encode(data).decode(),
    human_box=[4.0, 6.0, 40.0, 58.0],
    object_box=[30.0, 10.0, 60.0, 30.0],
    object_="orange",
)
taught = add_examples.sync(client=client, id=created.verb.id, body=ExamplesIn(examples=[example, example]))
check(isinstance(taught, CreatedExamples), f"examples stored: {taught}")
check(taught.verb.row_source.kind == RowKind.EXAMPLES and taught.verb.row_source.examples == 2, f"{taught.verb}")
listed = list_examples.sync(client=client, id=created.verb.id)
check(len(listed) == 2 and all(e.used_by_model for e in listed), f"two examples listed: {listed}")
explained = detect.sync(client=client, body=File(payload=io.BytesIO(data)), verbs="juggle", top_k=3, explain=True)
check(all(t.explanation.verb_row.kind == RowKind.EXAMPLES for t in explained.triplets), "explained verb rows")
removed = delete_example.sync(client=client, id=created.verb.id, example_id=listed[0].id)
check(removed.vocabulary_version > taught.vocabulary_version, "removing an example bumps the version")
check(get_verb.sync(client=client, id=created.verb.id).row_source.examples == 1, "one example left")
outside = ExampleIn(image=example.image, human_box=[0.0, 0.0, 9999.0, 10.0], object_box=[0.0, 0.0, 5.0, 5.0], object_="orange")
refused = add_examples.sync(client=client, id=created.verb.id, body=ExamplesIn(examples=[outside]))
check(isinstance(refused, Problem) and refused.status == 422, f"a box outside the image is a 422: {refused}")
check(len(list_examples.sync(client=client, id=created.verb.id)) == 1, "the refused request stored nothing")

deleted = delete_verb.sync(client=client, id=created.verb.id)
check(deleted.vocabulary_version > created.vocabulary_version, "delete bumps the version")
check(list_interactions.sync(client=client, pack="user") == [], "interactions gone with the verb")

problem = detect.sync(client=client, body=File(payload=io.BytesIO(b"")))
check(isinstance(problem, Problem) and problem.status == 400, f"empty image is a 400 problem: {problem}")
check(problem.type_ == "urn:hoiclip:problem:invalid-image", f"stable problem type: {problem.type_}")

print(f"SDK: {checks} passed, 0 failed")

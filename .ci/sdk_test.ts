// Drives a live hoiclip server through the TypeScript client generated from
// openapi/openapi.json by @hey-api/openapi-ts (see .ci/ts-sdk.sh): detect, register a verb
// with two objects, detect again and see the new interactions, teach the verb from an
// example image, delete the verb, and check a documented error. Type-checked with tsc
// --strict before it runs, so the generated types are exercised too.
import { readFileSync } from "node:fs";

import { client } from "./sdk/client.gen";
import {
  addExamples,
  createVerb,
  deleteVerb,
  detect,
  info,
  listInteractions,
} from "./sdk/sdk.gen";

const [base, imagePath] = process.argv.slice(2);
client.setConfig({ baseUrl: base });
const image = readFileSync(imagePath).toString("base64");
let checks = 0;

function check(condition: boolean, message: string): void {
  if (!condition) {
    console.log(`SDK check failed: ${message}`);
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
  checks += 1;
}

async function main(): Promise<void> {
  const about = await info();
  check(about.data?.model.trained === false, `demo model reports trained=false: ${JSON.stringify(about.data)}`);

  const first = await detect({ body: { image }, query: { top_k: 5 } });
  check(first.response.status === 200 && first.data !== undefined, `detect answered ${first.response.status}`);
  const firstAnswer = first.data!;
  check(firstAnswer.triplets.length === 5, `5 triplets, got ${firstAnswer.triplets.length}`);

  const created = await createVerb({ body: { name: "juggle", ing: "juggling", objects: ["orange", "apple"] } });
  check(created.response.status === 201 && created.data !== undefined, `verb created: ${created.response.status}`);
  const verb = created.data!;
  check(verb.interactions.length === 2, "two interactions created");
  check(verb.vocabulary_version > firstAnswer.vocabulary_version, "vocabulary version moved");
  check(verb.verb.row_source?.kind === "text", "a new verb starts on its text row");

  const second = await detect({ body: { image, verbs: "juggle", top_k: 10, explain: true } });
  const secondAnswer = second.data!;
  check(secondAnswer.vocabulary_version === verb.vocabulary_version, "the next request uses the new classifier");
  check(secondAnswer.triplets.length > 0 && secondAnswer.triplets.every((t) => t.verb === "juggle"), "new interactions detected");
  check(secondAnswer.triplets.every((t) => t.explanation?.verb_row?.kind === "text"), "explained verb rows");
  const prompts = new Set((await listInteractions({ query: { pack: "user" } })).data!.map((i) => i.prompt));
  check(prompts.has("a photo of a person juggling an orange") && prompts.has("a photo of a person juggling an apple") && prompts.size === 2, `${[...prompts]}`);

  const taught = await addExamples({
    path: { id: verb.verb.id },
    body: { examples: [{ image, human_box: [4, 6, 40, 58], object_box: [30, 10, 60, 30], object: "orange" }] },
  });
  check(taught.response.status === 201, `examples stored: ${taught.response.status}`);
  check(taught.data?.verb.row_source?.kind === "examples" && taught.data.verb.row_source.examples === 1, "learned row");

  const deleted = await deleteVerb({ path: { id: verb.verb.id } });
  check((deleted.data?.vocabulary_version ?? 0) > (taught.data?.vocabulary_version ?? 0), "delete bumps the version");
  check((await listInteractions({ query: { pack: "user" } })).data!.length === 0, "interactions gone with the verb");

  const problem = await detect({ body: { image: "" } });
  check(problem.response.status === 400, `empty image is a 400: ${problem.response.status}`);
  check(problem.error?.type === "urn:hoiclip:problem:invalid-image", `stable problem type: ${JSON.stringify(problem.error)}`);
  console.log(`TypeScript SDK: ${checks} passed, 0 failed`);
}

main().catch((e: unknown) => {
  console.log(`SDK check failed: ${String(e)}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
});

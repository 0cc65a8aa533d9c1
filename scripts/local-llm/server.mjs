// An OpenAI-compatible HTTP shim over node-llama-cpp (prebuilt llama.cpp binding), serving one
// GGUF model on 127.0.0.1 for `ists search --llm local` and `ists llm serve`.
//
//   POST /v1/chat/completions  messages, temperature, max_tokens, seed, response_format
//                              (json_schema -> a llama.cpp grammar, json_object -> JSON grammar)
//   GET  /v1/models            the one model
//   GET  /health               {"status":"ok","model":...} once the model is loaded
//
// Requests are served one at a time on one context sequence: the model runs on few threads, so
// concurrency would only interleave and slow every request, and keeping one sequence lets
// llama.cpp reuse the shared prompt prefix (system + background) across requests; the reused
// part is reported as `cached_tokens`.
//
// Usage: node server.mjs --modules DIR/node_modules --model FILE [--port 8090] [--threads 1]
//        [--context 4096] [--name gemma-3-270m]
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => {
        if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
        return acc;
    }, []),
);
const port = Number(args.port ?? 8090);
const threads = Number(args.threads ?? 1);
const contextSize = Number(args.context ?? 4096);
const modelPath = args.model;
const modelName = args.name ?? path.basename(modelPath ?? "model", ".gguf");
const MAX_BODY = 4 * 1024 * 1024;
if (!modelPath || !args.modules) {
    console.error("usage: node server.mjs --modules DIR/node_modules --model FILE [--port N]");
    process.exit(2);
}

// The package lives in the cache, not next to this file: import it by absolute path.
const entry = path.join(args.modules, "node-llama-cpp", "dist", "index.js");
const { getLlama, LlamaChatSession, LlamaGrammar, LlamaText } = await import(pathToFileURL(entry).href);
// The public createGrammarForJsonSchema pretty-prints (newlines, 4-space indents): about three
// times the tokens of compact JSON, and tokens are the cost here. The generator it uses takes a
// compact option; it is internal, so fall back to the public call if the file ever moves.
let compactGbnf = null;
try {
    const gen = path.join(args.modules, "node-llama-cpp", "dist", "utils", "gbnfJson", "getGbnfGrammarForGbnfJsonSchema.js");
    compactGbnf = (await import(pathToFileURL(gen).href)).getGbnfGrammarForGbnfJsonSchema;
} catch {
    console.error("local-llm: compact grammar generator not found; using pretty-printed JSON");
}
// build: "never" - use the prebuilt binary or fail; a silent 20-minute source build is worse.
const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads, logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize, threads, sequences: 1 });
const sequence = context.getSequence();
let ready = true;

// OpenAI's JSON-schema dialect -> node-llama-cpp's subset: `anyOf` becomes `oneOf`, keywords the
// grammar generator does not know are dropped (they only constrain further; the client validates).
function toGbnfSchema(s) {
    if (Array.isArray(s)) return s.map(toGbnfSchema);
    if (s === null || typeof s !== "object") return s;
    const keep = ["type", "properties", "required", "additionalProperties", "items", "minItems",
        "maxItems", "enum", "const", "oneOf", "description", "prefixItems", "$defs", "$ref",
        "minLength", "maxLength", "format"];
    const out = {};
    for (const [k, v] of Object.entries(s)) {
        if (k === "anyOf") out.oneOf = toGbnfSchema(v);
        else if (k === "properties" || k === "$defs")
            out[k] = Object.fromEntries(Object.entries(v).map(([n, x]) => [n, toGbnfSchema(x)]));
        else if (keep.includes(k)) out[k] = toGbnfSchema(v);
    }
    return out;
}

async function grammarFor(format) {
    if (!format || format.type === "text") return undefined;
    if (format.type === "json_object") return llama.getGrammarFor("json");
    if (format.type === "json_schema") {
        const schema = format.json_schema?.schema;
        if (!schema) throw new HttpError(400, "response_format.json_schema.schema is missing");
        try {
            const gbnfSchema = toGbnfSchema(schema);
            if (!compactGbnf) return await llama.createGrammarForJsonSchema(gbnfSchema);
            const grammar = compactGbnf(gbnfSchema, { allowNewLines: false, scopePadSpaces: 0 });
            return new LlamaGrammar(llama, {
                grammar,
                stopGenerationTriggers: [LlamaText(["\n".repeat(4)])],
                trimWhitespaceSuffix: true,
            });
        } catch (e) {
            throw new HttpError(400, `unsupported json_schema: ${e.message}`);
        }
    }
    throw new HttpError(400, `unsupported response_format.type '${format.type}'`);
}

class HttpError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

function historyOf(messages) {
    // node-llama-cpp's chat history: system / user / model items; the last user turn is the prompt.
    const items = messages.map((m) => {
        const text = typeof m.content === "string" ? m.content
            : (m.content ?? []).map((p) => p.text ?? "").join("");
        if (m.role === "system") return { type: "system", text };
        if (m.role === "assistant") return { type: "model", response: [text] };
        return { type: "user", text };
    });
    const last = items.pop();
    if (!last || last.type !== "user") throw new HttpError(400, "the last message must be a user message");
    return { history: items, prompt: last.text };
}

async function complete(body) {
    if (!Array.isArray(body.messages) || body.messages.length === 0)
        throw new HttpError(400, "messages must be a non-empty list");
    const { history, prompt } = historyOf(body.messages);
    const grammar = await grammarFor(body.response_format);
    const meterBefore = sequence.tokenMeter.getState();
    const session = new LlamaChatSession({ contextSequence: sequence, autoDisposeSequence: false });
    try {
        session.setChatHistory(history);
        const t0 = Date.now();
        const res = await session.promptWithMeta(prompt, {
            grammar,
            maxTokens: Number(body.max_completion_tokens ?? body.max_tokens ?? 512),
            temperature: Number(body.temperature ?? 0),
            seed: body.seed === undefined ? undefined : Number(body.seed),
        });
        const meter = sequence.tokenMeter.getState();
        const evaluated = meter.usedInputTokens - meterBefore.usedInputTokens;
        const completion = meter.usedOutputTokens - meterBefore.usedOutputTokens;
        const promptTokens = Math.max(evaluated, sequence.contextTokens.length - completion);
        return {
            id: `chatcmpl-${Date.now().toString(36)}`,
            object: "chat.completion",
            created: Math.floor(Date.now() / 1000),
            model: modelName,
            choices: [{
                index: 0,
                message: { role: "assistant", content: res.responseText },
                finish_reason: res.stopReason === "maxTokens" ? "length" : "stop",
            }],
            usage: {
                prompt_tokens: promptTokens,
                completion_tokens: completion,
                total_tokens: promptTokens + completion,
                prompt_tokens_details: { cached_tokens: Math.max(0, promptTokens - evaluated) },
            },
            timings: { ms: Date.now() - t0 },
        };
    } finally {
        session.dispose({ disposeSequence: false });
    }
}

// One request at a time (see the header).
let queue = Promise.resolve();
function serialized(fn) {
    const run = queue.then(fn, fn);
    queue = run.catch(() => {});
    return run;
}

function send(res, status, obj) {
    const text = JSON.stringify(obj);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
}

const server = http.createServer((req, res) => {
    const url = req.url.split("?")[0];
    if (req.method === "GET" && url === "/health") return send(res, ready ? 200 : 503, { status: ready ? "ok" : "loading", model: modelName });
    if (req.method === "GET" && url === "/v1/models")
        return send(res, 200, { object: "list", data: [{ id: modelName, object: "model", owned_by: "local" }] });
    if (req.method !== "POST" || url !== "/v1/chat/completions")
        return send(res, 404, { error: { message: `no route ${req.method} ${url}`, type: "not_found" } });
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy();
        else chunks.push(c);
    });
    req.on("end", async () => {
        try {
            let body;
            try {
                body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            } catch (e) {
                throw new HttpError(400, `request body is not JSON: ${e.message}`);
            }
            send(res, 200, await serialized(() => complete(body)));
        } catch (e) {
            const status = e instanceof HttpError ? e.status : 500;
            send(res, status, { error: { message: String(e.message ?? e), type: status === 400 ? "invalid_request_error" : "server_error" } });
        }
    });
});
server.listen(port, "127.0.0.1", () => {
    console.error(`local-llm: serving ${modelName} on http://127.0.0.1:${port}/v1 (${threads} thread(s), context ${contextSize})`);
});
for (const sig of ["SIGINT", "SIGTERM"]) {
    process.on(sig, async () => {
        ready = false;
        server.close();
        await context.dispose();
        await model.dispose();
        await llama.dispose();
        process.exit(0);
    });
}

"""A fake Gemini API (`generateContent`, `streamGenerateContent?alt=sse`) in the real wire format.

It checks what the real API checks and answers in Google's error shape: the key in
`x-goog-api-key` (a bad key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID, as Google
does), unknown fields ("Invalid JSON payload received. Unknown name ..."), roles, parts, function
declaration names, and the rule that a turn answering function calls holds exactly as many
function responses as the model turn had calls.

Replies: "Hello from fake Gemini!" in three records; a `get_weather` functionCall (finishReason
STOP, as Gemini reports it) when tools are offered and the last turn is user text; "It is sunny in
Paris." after a functionResponse. SSE records end in CRLF CRLF like Google's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.server import FakeServer, Recorded, Reply

API_KEY = "AIzaFakeGeminiProviderKey0123456789abc"
MODEL_VERSION = "gemini-2.5-flash-001"
RESPONSE_ID = "fakeGeminiResp01"
TEXT_PARTS = ["Hello", " from fake", " Gemini!"]
ANSWER = "It is sunny in Paris."
THOUGHT = "The user greets me."

_TOP_LEVEL = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
}
_GENERATION = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "thinkingConfig",
}
_PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
_PART_EXTRAS = {"thought", "thoughtSignature"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_PATH = re.compile(r"/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)(\?alt=sse)?$")


def google_error(code: int, status: str, message: str, details: list[Any] | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return Reply(code, {"content-type": "application/json; charset=UTF-8"}, json.dumps({"error": error}, indent=2).encode())


def invalid(message: str) -> Reply:
    return google_error(400, "INVALID_ARGUMENT", message)


def _validate(body: Any) -> str | None:
    """The checks Gemini makes, as the message of its 400, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    for key in body:
        if key not in _TOP_LEVEL:
            return f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
    for key in body.get("generationConfig", {}):
        if key not in _GENERATION:
            return f'Invalid JSON payload received. Unknown name "{key}" at \'generation_config\': Cannot find field.'
    thinking = body.get("generationConfig", {}).get("thinkingConfig", {})
    if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        return "You can only set only one of thinking budget and thinking level."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    system = body.get("systemInstruction")
    if system is not None and not (isinstance(system, dict) and isinstance(system.get("parts"), list)):
        return "Invalid value at 'system_instruction'"
    previous_calls = 0
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}])"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            data = [k for k in part if k in _PART_FIELDS]
            unknown = [k for k in part if k not in _PART_FIELDS | _PART_EXTRAS]
            if unknown:
                return f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'contents[{i}].parts[{j}]\': Cannot find field.'
            if len(data) != 1:
                return f"contents[{i}].parts[{j}]: exactly one data field is required"
            if "inlineData" in part and not (part["inlineData"].get("mimeType") and part["inlineData"].get("data")):
                return f"contents[{i}].parts[{j}].inline_data: mime_type and data are required"
            if "functionCall" in part and not isinstance(part["functionCall"].get("args", {}), dict):
                return f"contents[{i}].parts[{j}].function_call.args must be an object"
            if "functionResponse" in part and not isinstance(part["functionResponse"].get("response"), dict):
                return f"contents[{i}].parts[{j}].function_response.response must be an object"
        responses = sum(1 for p in parts if "functionResponse" in p)
        if responses and (content["role"] != "user" or responses != previous_calls):
            return (
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
        previous_calls = sum(1 for p in parts if "functionCall" in p) if content["role"] == "model" else 0
    for t, tool in enumerate(body.get("tools") or []):
        for d, declaration in enumerate(tool.get("functionDeclarations") or []):
            if not _NAME.fullmatch(str(declaration.get("name", ""))):
                return f"* GenerateContentRequest.tools[{t}].function_declarations[{d}].name: Invalid function name."
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                return "parameters and parametersJsonSchema are mutually exclusive"
    mode = (body.get("toolConfig") or {}).get("functionCallingConfig", {}).get("mode")
    if mode is not None and mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        return f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})"
    return None


def prompt_tokens(body: dict[str, Any]) -> int:
    """2 per content plus one per word of text (deterministic, for exact assertions)."""
    total = 0
    for content in body["contents"]:
        total += 2 + sum(len(p.get("text", "").split()) for p in content["parts"])
    system = body.get("systemInstruction")
    if system:
        total += sum(len(p.get("text", "").split()) for p in system["parts"])
    return total


class FakeGemini(FakeServer):
    api_key = API_KEY

    @property
    def base_url(self) -> str:
        return self.origin + "/v1beta"

    def default_reply(self, recorded: Recorded) -> Reply:
        match = _PATH.match(recorded.path)
        if recorded.method != "POST" or match is None:
            return google_error(404, "NOT_FOUND", "Requested entity was not found.")
        model, action, sse = match.groups()
        if recorded.headers.get("x-goog-api-key") != self.api_key:
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}],
            )
        try:
            body = json.loads(recorded.body)
        except ValueError:
            return invalid("Invalid JSON payload received.")
        problem = _validate(body)
        if problem is not None:
            return invalid(problem)
        if model.startswith("gemini-bogus"):
            return google_error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, or is not supported for generateContent.")
        records = self.records(body)
        if action == "generateContent":
            return Reply(200, {"content-type": "application/json; charset=UTF-8"}, json.dumps(merge(records)).encode())
        if sse:
            events = [b"data: " + json.dumps(r).encode() + b"\r\n\r\n" for r in records]
            return Reply(200, {"content-type": "text/event-stream"}, events=events)
        return Reply(200, {"content-type": "application/json; charset=UTF-8"}, json.dumps(records).encode())

    def records(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream records of the reply (a non-stream reply is their merge)."""
        last = body["contents"][-1]
        offered = bool(body.get("tools")) and (body.get("toolConfig") or {}).get("functionCallingConfig", {}).get("mode") != "NONE"
        answering = any("functionResponse" in p for p in last["parts"])
        thinking = (body.get("generationConfig") or {}).get("thinkingConfig", {}).get("includeThoughts")
        prompt = prompt_tokens(body)
        parts_list: list[list[dict[str, Any]]]
        if answering:
            parts_list = [[{"text": ANSWER}]]
        elif offered:
            parts_list = [[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnMQ=="}]]
        else:
            parts_list = [[{"text": t}] for t in TEXT_PARTS]
        if thinking:
            parts_list.insert(0, [{"text": THOUGHT, "thought": True}])
        out = []
        for i, parts in enumerate(parts_list):
            candidates = 4 * (i + 1)
            usage: dict[str, Any] = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": candidates,
                "totalTokenCount": prompt + candidates + (7 if thinking else 0),
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            }
            if thinking:
                usage["thoughtsTokenCount"] = 7
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if i == len(parts_list) - 1:
                candidate["finishReason"] = "STOP"
            out.append({"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL_VERSION, "responseId": RESPONSE_ID})
        return out


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming response equal to a stream of records (text parts joined)."""
    parts: list[dict[str, Any]] = []
    for record in records:
        for part in record["candidates"][0]["content"]["parts"]:
            if parts and "text" in part and "text" in parts[-1] and part.get("thought") == parts[-1].get("thought"):
                parts[-1] = {**parts[-1], "text": parts[-1]["text"] + part["text"]}
            else:
                parts.append(part)
    last = records[-1]
    candidate = {**last["candidates"][0], "content": {"parts": parts, "role": "model"}}
    return {**last, "candidates": [candidate]}


def record(parts: list[dict[str, Any]], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    """One SSE record for scripted streams."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    obj: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL_VERSION, "responseId": RESPONSE_ID}
    if usage:
        obj["usageMetadata"] = usage
    return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"

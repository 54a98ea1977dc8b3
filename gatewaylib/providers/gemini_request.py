"""Chat Completions request -> Gemini `generateContent` request (translation.md F.2). Pure.

Same lenient rules as the Anthropic translator: drop what has no equivalent, repair what can be
repaired (same-role turns merged, missing function responses filled in), and answer 400 with a
real `param` only where the request cannot be honoured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gatewaylib import jsonutil
from gatewaylib.errors import InvalidRequest
from gatewaylib.providers.chatinput import (
    DATA_URL,
    assistant_texts,
    assistant_tool_calls,
    clean_stop,
    is_number,
    positive_int,
    text_of_parts,
    user_parts,
)

#: Gemini 3 function calling needs each call's `thoughtSignature` back; it travels to the
#: client inside the tool-call id (`call_x__thought__<sig>`), the one field clients echo.
THOUGHT_SEPARATOR = "__thought__"
MAX_STOP_SEQUENCES = 5
MISSING_RESULT = "no result was provided"
#: reasoning_effort -> thinkingBudget for Gemini 2.5 models.
THINKING_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_GEMINI_3 = re.compile(r"gemini-[3-9]")
_CAN_DISABLE_THINKING = re.compile(r"flash")
#: URIs Gemini fetches itself: its Files API and Cloud Storage.
_GEMINI_FILE_URI = re.compile(r"(gs://|https://generativelanguage\.googleapis\.com/)")
_EXTENSION_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
}


@dataclass(frozen=True)
class Download:
    """An image URL Gemini cannot fetch: `part["inlineData"]` is filled in once downloaded."""

    part: dict[str, Any]
    url: str
    param: str


@dataclass
class GeminiPlan:
    """The translated body plus what the provider must do before sending it."""

    body: dict[str, Any]
    downloads: list[Download] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def split_tool_id(tool_id: str) -> tuple[str, str | None]:
    """A tool-call id -> (the id, the Gemini thought signature carried in it, if any)."""
    head, sep, signature = tool_id.partition(THOUGHT_SEPARATOR)
    return (head, signature) if sep and signature else (tool_id, None)


def _mime_from_uri(uri: str) -> str:
    extension = uri.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
    return _EXTENSION_TYPES.get(extension, "image/jpeg")


def _media_part(url: Any, param: str, plan: GeminiPlan) -> dict[str, Any]:
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url needs a 'url'.", param=param)
    if url.startswith("data:"):
        match = DATA_URL.fullmatch(url)
        if not match:
            raise InvalidRequest("The image data URL is not base64 encoded.", param=param)
        return {"inlineData": {"mimeType": match.group(1).lower(), "data": match.group(2)}}
    if _GEMINI_FILE_URI.match(url):
        return {"fileData": {"mimeType": _mime_from_uri(url), "fileUri": url}}
    if url.startswith(("http://", "https://")):
        # Gemini fetches only its own URIs: the provider downloads this one and inlines it.
        part: dict[str, Any] = {"inlineData": {}}
        plan.downloads.append(Download(part, url, param))
        return part
    raise InvalidRequest("image_url must be an http(s) URL or a base64 data URL.", param=param)


def _user_parts(content: Any, param: str, plan: GeminiPlan) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for kind, part, p in user_parts(content, param):
        if kind == "text":
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_media_part(part.get("image_url"), f"{p}.image_url", plan))
        elif kind == "file":
            file = part.get("file")
            if not isinstance(file, dict):
                raise InvalidRequest("'file' must be an object.", param=f"{p}.file")
            if file.get("file_id") and not file.get("file_data"):
                raise InvalidRequest(
                    "File ids (OpenAI Files API) cannot be sent here; inline 'file_data'.",
                    param=f"{p}.file.file_id",
                )
            data = file.get("file_data")
            if not isinstance(data, str) or not DATA_URL.fullmatch(data):
                raise InvalidRequest(
                    "'file_data' must be a base64 data URL.", param=f"{p}.file.file_data"
                )
            parts.append(_media_part(data, f"{p}.file.file_data", plan))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                raise InvalidRequest("input_audio needs base64 'data'.", param=f"{p}.input_audio")
            fmt = str(audio.get("format") or "wav")
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": audio["data"]}})
        else:
            raise InvalidRequest(f"Unsupported content part type {kind!r}.", param=f"{p}.type")
    return parts


def _response_object(content: Any, param: str) -> dict[str, Any]:
    """A tool result as Gemini's `response` object [decision]: a JSON object is passed as is,
    anything else is wrapped as `{"content": <text>}`."""
    text = text_of_parts(content, param)
    if text.startswith("{"):
        try:
            value = jsonutil.loads(text)
        except jsonutil.JSONError:
            value = None
        if isinstance(value, dict):
            return value
    return {"content": text}


def _model_parts(
    message: dict[str, Any], index: int, names: dict[str, str]
) -> list[dict[str, Any]]:
    param = f"messages[{index}]"
    parts: list[dict[str, Any]] = []
    parts.extend({"text": text} for text in assistant_texts(message, param))
    for call_id, name, args in assistant_tool_calls(message, param):
        names[call_id] = name
        call_part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        _, signature = split_tool_id(call_id)
        if signature:
            call_part["thoughtSignature"] = signature
        parts.append(call_part)
    return parts


def convert_messages(
    messages: list[Any], plan: GeminiPlan
) -> tuple[str | None, list[dict[str, Any]]]:
    """-> (system instruction text or None, Gemini contents)."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for index, message in enumerate(messages):
        role = message.get("role")
        param = f"messages[{index}]"
        if role in ("system", "developer"):
            system.append(text_of_parts(message.get("content"), f"{param}.content"))
            continue
        if role == "user":
            parts = _user_parts(message.get("content"), f"{param}.content", plan)
            turn_role = "user"
        elif role == "assistant":
            parts = _model_parts(message, index, names)
            turn_role = "model"
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(
                    "Tool messages need a 'tool_call_id'.", param=f"{param}.tool_call_id"
                )
            if call_id not in names:
                raise InvalidRequest(
                    f"The tool result for '{call_id}' answers no earlier tool call.",
                    param=f"{param}.tool_call_id",
                )
            response = _response_object(message.get("content"), f"{param}.content")
            parts = [{"functionResponse": {"name": names[call_id], "response": response}}]
            turn_role = "user"
        else:
            raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"{param}.role")
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn_role, "parts": parts})
    joined = "\n".join(s for s in system if s)
    return joined or None, contents


def repair_function_responses(contents: list[dict[str, Any]]) -> None:
    """One response per call, in the content right after the model turn, responses first.

    Gemini rejects a turn whose function-response count differs from the calls' count; a
    missing result is filled in as an error, as the Anthropic translator does."""
    for i, turn in enumerate(contents):
        if turn["role"] != "model":
            continue
        calls = [p["functionCall"]["name"] for p in turn["parts"] if "functionCall" in p]
        if not calls:
            continue
        following = contents[i + 1] if i + 1 < len(contents) else None
        if following is None or following["role"] != "user":
            following = {"role": "user", "parts": []}
            contents.insert(i + 1, following)
        responses = [p for p in following["parts"] if "functionResponse" in p]
        others = [p for p in following["parts"] if "functionResponse" not in p]
        if len(responses) > len(calls):
            raise InvalidRequest(
                "More tool results than tool calls in the preceding assistant message.",
                param="messages",
            )
        answered = [r["functionResponse"]["name"] for r in responses]
        for name in answered:
            if name in calls:
                calls.remove(name)
        missing = [
            {"functionResponse": {"name": name, "response": {"error": MISSING_RESULT}}}
            for name in calls
        ]
        following["parts"] = responses + missing + others
    for i, turn in enumerate(contents):
        if turn["role"] == "user" and any("functionResponse" in p for p in turn["parts"]):
            previous = contents[i - 1] if i > 0 else None
            if previous is None or previous["role"] != "model":
                raise InvalidRequest(
                    "A tool result must follow the assistant message that called the tool.",
                    param="messages",
                )


def _declaration(function: Any, param: str) -> dict[str, Any]:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest("A function tool needs a 'name'.", param=param)
    name = function["name"]
    if not _FUNCTION_NAME.fullmatch(name):
        raise InvalidRequest(
            "Gemini function names start with a letter or underscore, use only a-z, A-Z, "
            "0-9, '_', '.', '-' and are at most 64 characters.",
            param=f"{param}.name",
        )
    declaration: dict[str, Any] = {"name": name}
    if isinstance(function.get("description"), str):
        declaration["description"] = function["description"]
    schema = function.get("parameters")
    if schema is not None:
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "'parameters' must be a JSON Schema object.", param=f"{param}.parameters"
            )
        # parametersJsonSchema takes full JSON Schema; legacy `parameters` only an OpenAPI subset.
        declaration["parametersJsonSchema"] = schema
    return declaration


def convert_tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    declarations: list[dict[str, Any]] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("'tools' must be an array.", param="tools")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise InvalidRequest("Each tool must be an object.", param=f"tools[{i}]")
            if tool.get("type") != "function":
                raise InvalidRequest(
                    f"Tool type {tool.get('type')!r} is not supported here; only function tools.",
                    param=f"tools[{i}].type",
                )
            declarations.append(_declaration(tool.get("function"), f"tools[{i}].function"))
    functions = body.get("functions")
    if tools is None and functions is not None:
        if not isinstance(functions, list):
            raise InvalidRequest("'functions' must be an array.", param="functions")
        declarations = [_declaration(f, f"functions[{i}]") for i, f in enumerate(functions)]
    return [{"functionDeclarations": declarations}] if declarations else None


def convert_tool_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    """tool_choice -> toolConfig.functionCallingConfig (vector 93)."""
    choice = body.get("tool_choice", body.get("function_call"))
    config: dict[str, Any]
    if choice is None:
        return None
    if choice in ("auto", "none"):
        config = {"mode": choice.upper()}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [
            t["function"]["name"] if isinstance(t.get("function"), dict) else t.get("name")
            for t in (allowed.get("tools") or [])
            if isinstance(t, dict)
        ]
        mode = "ANY" if allowed.get("mode") == "required" else "AUTO"
        config = {"mode": mode, "allowedFunctionNames": [n for n in names if isinstance(n, str)]}
    elif isinstance(choice, dict):
        function = choice.get("function") if "function" in choice else choice
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest("tool_choice must name a function.", param="tool_choice")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    else:
        raise InvalidRequest("Unsupported 'tool_choice' value.", param="tool_choice")
    return {"functionCallingConfig": config}


def _thinking_config(effort: str, model: str) -> dict[str, Any] | None:
    if _GEMINI_3.search(model):
        level = "low" if effort in ("none", "minimal", "low") else "high"
        return {"thinkingLevel": level, "includeThoughts": effort != "none"}
    if effort == "none":
        # Only the Flash models can switch thinking off; Pro keeps its default.
        return {"thinkingBudget": 0} if _CAN_DISABLE_THINKING.search(model) else None
    return {"thinkingBudget": THINKING_BUDGETS[effort], "includeThoughts": True}


def _generation_config(body: dict[str, Any], model: str, plan: GeminiPlan) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, key in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        value = body.get(name)
        if value is None:
            continue
        if not is_number(value):
            raise InvalidRequest(f"'{name}' must be a number.", param=name)
        config[key] = value
    seed = body.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InvalidRequest("'seed' must be an integer.", param="seed")
        config["seed"] = seed
    max_tokens = positive_int(body, "max_completion_tokens") or positive_int(body, "max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    n = positive_int(body, "n")
    if n and n > 1:
        config["candidateCount"] = n
    stop = clean_stop(body.get("stop"))
    if stop:
        if len(stop) > MAX_STOP_SEQUENCES:
            plan.warnings.append(f"stop truncated to its first {MAX_STOP_SEQUENCES} sequences")
        config["stopSequences"] = stop[:MAX_STOP_SEQUENCES]
    if body.get("logprobs") is True:
        config["responseLogprobs"] = True
        top = body.get("top_logprobs")
        if isinstance(top, int) and not isinstance(top, bool) and top > 0:
            config["logprobs"] = top
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict):
            raise InvalidRequest("'response_format' must be an object.", param="response_format")
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
                raise InvalidRequest(
                    "json_schema needs a 'schema' object.", param="response_format.json_schema"
                )
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = spec.get("schema") or {"type": "object"}
        elif kind not in ("text", None):
            raise InvalidRequest(
                f"Unsupported response_format type {kind!r}.", param="response_format.type"
            )
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in (*THINKING_BUDGETS, "none", "xhigh"):
            raise InvalidRequest(
                f"Unsupported reasoning_effort {effort!r}.", param="reasoning_effort"
            )
        thinking = _thinking_config("high" if effort == "xhigh" else effort, model)
        if thinking is not None:
            config["thinkingConfig"] = thinking
    return config


def translate_request(body: dict[str, Any], upstream_model: str) -> GeminiPlan:
    """Build the Gemini body for a validated chat request."""
    messages = body.get("messages")
    assert isinstance(messages, list)
    plan = GeminiPlan({})
    system, contents = convert_messages(messages, plan)
    if not contents:
        raise InvalidRequest(
            "The conversation has no user or assistant messages.", param="messages"
        )
    repair_function_responses(contents)
    out = plan.body
    if system is not None:
        out["systemInstruction"] = {"parts": [{"text": system}]}
    out["contents"] = contents
    tools = convert_tools(body)
    tool_config = convert_tool_choice(body)
    if tools is None and any("functionCall" in p for c in contents for p in c["parts"]):
        # History holds calls but no tools were offered: declare them and forbid new calls.
        names = sorted(
            {p["functionCall"]["name"] for c in contents for p in c["parts"] if "functionCall" in p}
        )
        tools = [{"functionDeclarations": [{"name": n} for n in names]}]
        tool_config = {"functionCallingConfig": {"mode": "NONE"}}
    if tools is not None:
        out["tools"] = tools
        if tool_config is not None:
            out["toolConfig"] = tool_config
    generation = _generation_config(body, upstream_model, plan)
    if generation:
        out["generationConfig"] = generation
    return plan

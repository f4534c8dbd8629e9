"""The object keys the request walk (guardrails/walk.py) does not read as text: the field
names the dialects' own request schemas fix, and JSON Schema's keywords.

A key in this set is one of these fixed words, whatever object holds it, so skipping it
hides nothing a caller wrote: any other key is read. Inside caller data (a tool call's
input or arguments, a function's response, a schema's `default` or `enum` values: the
walk's `_CALLER_DATA`) every key is read, these words too.

Missing a name here costs only a short text read for nothing; putting a caller's word
here would hide it, so the set holds names of the APIs' references only.
"""

from __future__ import annotations

_OPENAI = """
model messages role content name tool_calls tool_call_id function_call function arguments id type
text value image_url url detail input_audio data format file file_data file_id filename refusal
audio reasoning_content tools functions description parameters strict custom grammar definition
syntax tool_choice allowed_tools mode response_format json_schema schema prediction user metadata
stop logit_bias logprobs top_logprobs max_tokens max_completion_tokens n temperature top_p
frequency_penalty presence_penalty seed stream stream_options include_usage include_obfuscation
parallel_tool_calls service_tier store modalities voice web_search_options search_context_size
user_location approximate city country region timezone verbosity reasoning_effort
prompt_cache_key prompt_cache_retention safety_identifier annotations
prompt suffix best_of echo input dimensions encoding_format
instructions previous_response_id conversation include max_output_tokens max_tool_calls reasoning
effort summary generate_summary truncation background variables version status call_id output
encrypted_content action query queries results server_label server_url server_description
headers require_approval connector_id authorization container code outputs logs result
pending_safety_checks acknowledged_safety_checks approval_request_id approve reason
vector_store_ids max_num_results filters ranking_options ranker score_threshold quality size
container_id environment never always tool_names read_only item_reference
"""
_ANTHROPIC = """
system top_k thinking budget_tokens disable_parallel_tool_use input_schema cache_control ttl source
media_type title context citations enabled tool_use_id is_error signature mcp_servers
authorization_token tool_configuration context_management output_config edits trigger keep
clear_at_least clear_tool_inputs exclude_tools max_uses allowed_domains blocked_domains
stop_sequences cited_text start_char_index end_char_index document_index document_title
"""
_GEMINI = """
contents parts inlineData mimeType fileData fileUri functionCall functionResponse args response
thought thoughtSignature executableCode language codeExecutionResult outcome videoMetadata
startOffset endOffset fps systemInstruction functionDeclarations parametersJsonSchema
responseJsonSchema behavior googleSearch googleSearchRetrieval codeExecution urlContext toolConfig
functionCallingConfig allowedFunctionNames retrievalConfig latLng latitude longitude languageCode
safetySettings category threshold method generationConfig stopSequences responseMimeType
responseSchema responseModalities candidateCount maxOutputTokens topP topK presencePenalty
frequencyPenalty responseLogprobs enableEnhancedCivicAnswers speechConfig voiceConfig
prebuiltVoiceConfig voiceName thinkingConfig includeThoughts thinkingBudget thinkingLevel
mediaResolution cachedContent labels generateContentRequest willContinue scheduling
"""
_JSON_SCHEMA = """
properties required items prefixItems additionalProperties patternProperties propertyNames
default enum const examples example pattern minimum maximum exclusiveMinimum exclusiveMaximum
multipleOf minLength maxLength minItems maxItems uniqueItems minProperties maxProperties anyOf
oneOf allOf not if then else $ref $schema $id $defs definitions $comment $anchor $dynamicRef
nullable readOnly writeOnly deprecated contentMediaType contentEncoding dependentRequired
dependentSchemas unevaluatedProperties unevaluatedItems contains minContains maxContains
propertyOrdering
"""

STRUCTURAL_KEYS = frozenset((_OPENAI + _ANTHROPIC + _GEMINI + _JSON_SCHEMA).split())

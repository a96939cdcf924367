/*
 * fields.h - reading a request object's fields, shared by every handler.
 *
 * Each getter reads one member of a JSON object and either stores its value
 * or fills *p with a 422 whose pointer is base + "/" + key (base is the
 * pointer of obj itself: "" or NULL at the top, "/heads/2" inside a head).
 * A member that is absent or JSON null takes the default (a Python client
 * sending None means "not given"). Wrong JSON types are 422 bad_type, values
 * outside what the field allows 422 bad_option, with details written for
 * the user: "from_logits must be a boolean, got a string".
 *
 * All return 0 on success and -1 with *p set. Strings handed out are
 * borrowed from obj (valid while obj lives). Nothing here allocates except
 * api__get_tensor (through api_tensor_decode).
 */
#ifndef LOSSD_API_FIELDS_H
#define LOSSD_API_FIELDS_H

#include "lossd/api.h"
#include "lossd/extra.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes the JSON Pointer base + "/" + key into buf (RFC 6901: '~' and '/'
 * in key are escaped), truncating to cap. Returns buf. */
char *api__pointer(char *buf, size_t cap, const char *base, const char *key);

/* "a string", "a number", "a boolean", "null", "an array", "an object". */
const char *api__type_name(const json_t *v);

/* The member key of obj, or NULL when absent or JSON null. Borrowed. */
json_t *api__field(const json_t *obj, const char *key);

/* 422 unknown_field naming the first member of obj whose key is not in
 * allowed (a NULL-terminated list), suggesting the closest allowed name
 * ("from_logit": did you mean "from_logits"?). obj must be an object. */
int api__check_fields(const json_t *obj, const char *const *allowed, const char *base,
                      api_problem *p);

/* 422 missing_field when key is absent or null. */
int api__require(const json_t *obj, const char *base, const char *key, api_problem *p);

/* true / false only. */
int api__get_bool(bool *out, const json_t *obj, const char *base, const char *key, bool def,
                  api_problem *p);

/* A JSON number (integer or real), which must lie in [lo, hi] (422
 * bad_option otherwise; pass -INFINITY / INFINITY for no bound). */
int api__get_number(double *out, const json_t *obj, const char *base, const char *key, double def,
                    double lo, double hi, api_problem *p);

/* A whole number (1 and 1.0 alike) in [min, max] (422 bad_option). */
int api__get_int(int64_t *out, const json_t *obj, const char *base, const char *key, int64_t def,
                 int64_t min, int64_t max, api_problem *p);

/* ignore_class, or its synonym ignore_index (PyTorch): any whole number.
 * *has is whether either is given; both given and different is 422
 * bad_option at base/ignore_index. */
int api__get_ignore_class(bool *has, int64_t *out, const json_t *obj, const char *base,
                          api_problem *p);

/* A string that must be one of names (NULL-terminated); *out is its index,
 * or def when absent. 422 bad_option lists the allowed values. */
int api__get_enum(int *out, const json_t *obj, const char *base, const char *key,
                  const char *const *names, int def, api_problem *p);

/* Any string; *out is borrowed from obj (or def). */
int api__get_string(const char **out, const json_t *obj, const char *base, const char *key,
                    const char *def, api_problem *p);

/*
 * A tensor field, decoded with api_tensor_decode (pointer base/key). When
 * absent and not required, *out is left as API_TENSOR_INIT, so
 * out->t.data == NULL; when present, out->t.data != NULL even for an empty
 * tensor. Required and absent is 422 missing_field. *out must be
 * API_TENSOR_INIT or freed on entry; release with api_tensor_free.
 */
int api__get_tensor(api_tensor *out, const json_t *obj, const char *base, const char *key,
                    bool required, const api_tensor_opts *opts, api_problem *p);

/* ---- the metrics that ride on a loss (docs/API.md section 9; loss.c) ---- */
/* "top_k" of obj (pointer base) into x: 1 to ENG_EXTRA_MAX_TOPK whole
 * numbers >= 1, strictly increasing (<= C is the engine's check); lifted
 * arrays are read from pk (may be NULL). Absent leaves x. 0 or -1 with *p. */
int api__read_top_k(eng_extra_opts *x, const json_t *obj, const char *base, const api_packed *pk,
                    api_problem *p);
/* "calibration": {"bins": B} of obj into x->bins (B in [1, 1000], 15 when
 * absent). Absent leaves x. 0 or -1 with *p. */
int api__read_calibration(eng_extra_opts *x, const json_t *obj, const char *base, api_problem *p);
/* perplexity, top_k_accuracy and calibration of e into o; nonzero when out
 * of memory. */
int api__render_extra(json_t *o, const eng_extra_result *e);

#endif

/*
 * model/model.h — the hsadb network: configuration, weights, loading (internal).
 *
 * The network is ../shared/docs/model-spec.md: SWA lower half, a chunk encoder that turns
 * every 64 tokens of middle-layer states into one landmark and one K/V block, and an upper
 * half of Ng groups of (HSA layer + R SWA layers). Weights are loaded once from
 * config.json + model.safetensors into one fp32 arena owned by the model; every weight
 * pointer below points into it. Shapes are [out, in] (row-major, PyTorch Linear layout).
 */
#ifndef HSADB_MODEL_H
#define HSADB_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hsadb.h"

#define HSADB_TOK_BOS    256
#define HSADB_TOK_EOS    257
#define HSADB_TOK_QUERY  258
#define HSADB_TOK_ANSWER 259

typedef struct hsadb_config {
    int   vocab;       /* V  vocab_size (>= 260) */
    int   dim;         /* D  hidden_size */
    int   hidden;      /* F  intermediate_size (SwiGLU) */
    int   n_heads;     /* H  query heads (SWA and HSA) */
    int   head_dim;    /* dh */
    int   n_kv_heads;  /* Hk SWA K/V heads */
    int   n_mem_heads; /* Hm memory K/V heads = retrieval heads */
    int   retr_dim;    /* dr landmark width per memory head */
    int   n_lower;     /* Nl */
    int   n_encoder;   /* Ne */
    int   n_groups;    /* Ng */
    int   swa_per_group; /* R */
    int   chunk;       /* S */
    int   topk;        /* K */
    int   window;      /* W */
    float rope_theta;
    float eps;
    int   tie_embeddings;
    int   bypass;      /* hsa_residual: 0 "standard", 1 "bypass" */
} hsadb_config;

/* Attention of an SWA layer, an encoder layer or the SWA sub-block of an HSA layer. */
typedef struct hsadb_attn_w {
    const float *norm;    /* [D] pre-norm gain */
    const float *wq;      /* [H*dh, D] */
    const float *wk;      /* [Hk*dh, D] */
    const float *wv;      /* [Hk*dh, D] */
    const float *q_norm;  /* [dh] QKNorm gains */
    const float *k_norm;  /* [dh] */
    const float *wo;      /* [D, H*dh] */
} hsadb_attn_w;

typedef struct hsadb_mlp_w {
    const float *norm;    /* [D] */
    const float *gate;    /* [F, D] */
    const float *up;      /* [F, D] */
    const float *down;    /* [D, F] */
} hsadb_mlp_w;

typedef struct hsadb_swa_w {
    hsadb_attn_w attn;
    hsadb_mlp_w  mlp;
} hsadb_swa_w;

typedef struct hsadb_chunk_w {
    const float *in_norm;  /* [D] */
    const float *cls;      /* [D] e_cls, appended after in_norm */
    const float *out_norm; /* [D] */
    const float *lmk;      /* [Hm*dr, D] */
    const float *mk;       /* [Hm*dh, D] */
    const float *mv;       /* [Hm*dh, D] */
    const float *k_norm;   /* [dh] */
} hsadb_chunk_w;

typedef struct hsadb_hsa_w {
    hsadb_attn_w swa;      /* SWA sub-block */
    const float *norm;     /* [D] hsa_norm */
    const float *wr;       /* [Hm*dr, D] retrieval query */
    const float *wq;       /* [H*dh, D] */
    const float *q_norm;   /* [dh] */
    const float *wo;       /* [D, H*dh] */
    hsadb_mlp_w  mlp;
} hsadb_hsa_w;

typedef struct hsadb_weights {
    const float  *embed;      /* [V, D] */
    hsadb_swa_w  *lower;      /* [Nl] */
    hsadb_swa_w  *encoder;    /* [Ne] */
    hsadb_chunk_w chunk;
    hsadb_hsa_w  *hsa;        /* [Ng] */
    hsadb_swa_w  *upper;      /* [Ng*R], group g's r-th layer at g*R + r */
    const float  *final_norm; /* [D] */
    const float  *lm_head;    /* [V, D] (= embed when tied) */
} hsadb_weights;

struct hsadb_model {
    hsadb_config  c;
    hsadb_weights w;
    float        *arena;      /* owned: every tensor, fp32 */
    size_t        arena_len;  /* floats */
    uint64_t      n_params;
    uint8_t       fingerprint[32];
    char          fingerprint_hex[65];
};

/* Number of attention layers in the upper half (SWA sub-blocks + SWA layers). */
static inline int hsadb_config_upper_attn_layers(const hsadb_config *c) {
    return c->n_groups * (1 + c->swa_per_group);
}

/* Load a model from weights + config held in memory (used by hsadb_model_open and tests).
 * `config_json` and `st` (the safetensors file contents) are borrowed for the call. */
int hsadb_model_load(const char *config_json, size_t config_len, const uint8_t *st, size_t st_len,
                     hsadb_model **out);

#endif

/*
 * wire.c: limits on ONNX's protobuf wire format, checked before protobuf-c unpacks.
 *
 * protobuf-c allocates whatever a message claims: counts of repeated fields, nested
 * messages, lengths.  A hostile file could exhaust memory or the stack before any check
 * of ours ran, so the raw bytes are walked first, counting what each message holds
 * against the limits in format.h (GRAFT_MAX_*), without allocating anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/format.h"

/* ---- limits on the wire ----------------------------------------------------------------- */

/*
 * protobuf-c unpacks nested messages by recursion and allocates every repeated element,
 * with no limit of its own: a few hundred kilobytes of nested TypeProtos overflow the
 * stack, and a message of empty nodes (two bytes each) costs a hundred times its size.
 * So the wire format is walked first, following the schema through protobuf-c's
 * descriptors, to check nesting and counts (format.h's GRAFT_MAX_*) before unpacking.
 * The walk's own recursion is bounded by the limit it checks.
 */

struct wire_budget {
	uint64_t nodes, values, entries;
};

static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (int i = 0; i < 10 && *p < end; i++) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* Counts one element of repeated field f of a message of type d, against that field's
 * count in this message (*count) or against the whole model's budget. */
static int wire_count(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
		      uint32_t *count, struct wire_budget *b, struct graft_err *err)
{
	const char *name = f->name;

	if (d == &onnx__graph_proto__descriptor || d == &onnx__function_proto__descriptor) {
		if (strcmp(name, "node") == 0) {
			if (++b->nodes > GRAFT_MAX_NODES)
				return graft_err_set(err, GRAFT_EFORMAT, "the model has more than %d "
						     "nodes", GRAFT_MAX_NODES);
			return 0;
		}
		if (d == &onnx__graph_proto__descriptor &&
		    (strcmp(name, "initializer") == 0 || strcmp(name, "sparse_initializer") == 0 ||
		     strcmp(name, "input") == 0 || strcmp(name, "output") == 0 ||
		     strcmp(name, "value_info") == 0)) {
			if (++b->values > GRAFT_MAX_VALUES)
				return graft_err_set(err, GRAFT_EFORMAT, "the model has more than %d "
						     "graph values (initializers, inputs, outputs, "
						     "value_info)", GRAFT_MAX_VALUES);
			return 0;
		}
	}
	if (d == &onnx__node_proto__descriptor) {
		if (strcmp(name, "input") == 0 || strcmp(name, "output") == 0) {
			if (++*count > GRAFT_MAX_NODE_IO)
				return graft_err_set(err, GRAFT_EFORMAT, "a node has more than %d %ss",
						     GRAFT_MAX_NODE_IO, name);
			return 0;
		}
		if (strcmp(name, "attribute") == 0) {
			if (++*count > GRAFT_MAX_ATTRIBUTES)
				return graft_err_set(err, GRAFT_EFORMAT, "a node has more than %d "
						     "attributes", GRAFT_MAX_ATTRIBUTES);
			return 0;
		}
	}
	if (++b->entries > GRAFT_MAX_ENTRIES)
		return graft_err_set(err, GRAFT_EFORMAT, "the model has more than %d repeated "
				     "entries (%s.%s and the like)", GRAFT_MAX_ENTRIES, d->short_name,
				     name);
	return 0;
}

/* Walks one message of type d in [p, end): 0, a negative status when over a limit, or 1
 * when the bytes are not protobuf.  graphs counts the GraphProtos around it. */
static int wire_walk(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d,
		     int depth, int graphs, struct wire_budget *b, struct graft_err *err)
{
	uint32_t counts[32] = {0}, spare = 0;
	int rc;

	if (depth > GRAFT_MAX_PROTO_DEPTH)
		return graft_err_set(err, GRAFT_EFORMAT, "protobuf messages nested more than %d "
				     "deep", GRAFT_MAX_PROTO_DEPTH);
	if (d == &onnx__graph_proto__descriptor && ++graphs > GRAFT_MAX_GRAPH_DEPTH + 1)
		return graft_err_set(err, GRAFT_EFORMAT, "subgraphs nested more than %d deep",
				     GRAFT_MAX_GRAPH_DEPTH);
	while (p < end) {
		uint64_t tag, v;
		if (wire_varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
			return 1;
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
		switch (tag & 7) {
		case 0:
			if (wire_varint(&p, end, &v))
				return 1;
			break;
		case 1:
			if (end - p < 8)
				return 1;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return 1;
			p += 4;
			break;
		case 2:
			if (wire_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return 1;
			if (f && f->label == PROTOBUF_C_LABEL_REPEATED &&
			    (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING ||
			     f->type == PROTOBUF_C_TYPE_BYTES)) {
				size_t k = (size_t)(f - d->fields);
				if ((rc = wire_count(d, f, k < 32 ? &counts[k] : &spare, b, err)))
					return rc;
			}
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    (rc = wire_walk(p, p + v, f->descriptor, depth + 1, graphs, b, err)))
				return rc;
			p += v;
			break;
		default:        /* groups, which protobuf-c refuses too */
			return 1;
		}
	}
	return 0;
}

/* Checks buf, a serialized message of type d, against the limits before it is unpacked:
 * 0 when within them, a negative status (err set) when over, 1 when buf is not protobuf
 * (which the caller reports as protobuf-c's failure, without unpacking). */
int wire_check(const void *buf, size_t len, const ProtobufCMessageDescriptor *d,
	       struct graft_err *err)
{
	struct wire_budget b = {0};

	return wire_walk(buf, (const uint8_t *)buf + len, d, 0, 0, &b, err);
}


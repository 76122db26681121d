// Zones on the masks: for each kept detection, the share of its low-res mask inside each zone
// of its camera. The per-element math shared by the CUDA kernel (zones.cu) and its CPU twin
// (zones.cpp).
//
// The masks are the Tracker's: each class-batch's kept detections packed into bits
// (track/mask_iou.h: row-major, ceil(mask_w / 32) uint32 words a row, pixel x at bit x % 32)
// with their MaskMeta (pixel count and window), computed once in Tracker::enqueue. A zone is a
// polygon in fractions of the frame; the mask grid covers the whole frame (the engine sees the
// frame stretched to its square input), so cell (x, y) has its centre at ((x + 0.5) / mask_w,
// (y + 0.5) / mask_h) in every camera whatever its frame size, and a zone is rasterised once
// (at construction or when zones change) into a bitmap of the same packed layout: cells whose
// centre is inside the polygon. The overlap is then popcount(mask & zone) / popcount(mask),
// read only over the rows and words where the mask's and the zone's windows meet.
//
// A line is two such regions (the caller builds them): the strips on either side of the segment.
#pragma once

#include <cstdint>

#include "common.h"
#include "postprocess/layout.h"
#include "track/mask_iou.h"

namespace segpost {

constexpr int kMaxZoneVertices = 32;
constexpr int kMaxZoneClasses = 16;  // classes of one launch (their Records travel as an argument)

// How a detection's membership is measured (codes shared with python/segpost/zones.py).
enum class ZoneRule : int32_t {
  Mask = 0,          // share of the mask's cells inside the zone, in [0, 1]
  BottomCentre = 1,  // 1 when the box's bottom centre is inside the zone, else 0 (the peers' rule)
};

struct ZonePoint {
  float x, y;  // fractions of the frame, y down
};

// A zone slot of a camera: its polygon (vertices 0: an unused slot) and its bitmap's window
// (cells; x1, y1 exclusive; empty when no cell centre is inside).
struct ZoneRegion {
  int32_t vertices;
  int32_t x0, y0, x1, y1;
  ZonePoint v[kMaxZoneVertices];
};

// Even-odd rule, evaluated in double (exactly alike on both sides): a horizontal ray to the
// right of (x, y) crosses the edges whose ends lie on either side of y (half-open, so a vertex on
// the ray counts once).
SEGPOST_HD bool point_in_polygon(const ZonePoint* v, int n, double x, double y) {
  bool inside = false;
  for (int i = 0, j = n - 1; i < n; j = i++) {
    const double yi = v[i].y, yj = v[j].y;
    if ((yi > y) != (yj > y)) {
      const double xi = v[i].x, xj = v[j].x;
      const double cross = xi + (y - yi) / (yj - yi) * (xj - xi);
      if (x < cross) inside = !inside;
    }
  }
  return inside;
}

// Centre of mask cell i along an axis of `cells` cells, as a fraction of the frame.
SEGPOST_HD double cell_centre(int i, int cells) { return (i + 0.5) / cells; }

// The bottom-centre rule: the box's (xyxy pixels) bottom centre, in fractions of the frame.
SEGPOST_HD bool bottom_centre_inside(const ZoneRegion& z, const float* box, int width, int height) {
  const double x = 0.5 * (static_cast<double>(box[0]) + static_cast<double>(box[2])) / width;
  const double y = static_cast<double>(box[3]) / height;
  return point_in_polygon(z.v, z.vertices, x, y);
}

// Cells set in both a detection's mask and a zone's bitmap over window `r` (inside both windows:
// bits outside a window are 0 in that bitmap, so no masking); pairs begin, begin + step, ...
SEGPOST_HD int32_t zone_intersection_part(const uint32_t* det, const uint32_t* zone, int words, const Rect& r,
                                          int begin, int step) {
  const WordSpan s = word_span(r);
  int32_t sum = 0;
  for (int i = begin; i < s.pairs; i += step) {
    const int y = r.y0 + i / s.span, w = s.w0 + i % s.span;
    sum += popcount32(det[y * words + w] & zone[y * words + w]);
  }
  return sum;
}

// The one division, alike on both sides (IEEE, correctly rounded).
SEGPOST_HD float zone_share(int32_t inside, int32_t count) {
  return count > 0 ? static_cast<float>(inside) / static_cast<float>(count) : 0.0f;
}

SEGPOST_HD Rect zone_rect(const ZoneRegion& z) { return Rect{z.x0, z.y0, z.x1, z.y1}; }

// Sizes of a ZoneMap's buffers.
struct ZoneGeometry {
  int32_t mask_h, mask_w;
  int32_t words;       // per row
  int32_t mask_words;  // per bitmap
  int32_t capacity;    // detections per class-batch
  int32_t max_zones;   // regions per camera
};

// The round's records of every class (a kernel argument, like FrameSizes).
struct ClassRecords {
  Records records[kMaxZoneClasses];
};

// -- the ops: CPU twin (zones.cpp) and kernel (zones.cu) ------------------------------------------

// A zone's bitmap (g.mask_words words, zeroed here) and window; on the host, at configuration time.
void rasterise_zone(const ZonePoint* v, int n, const ZoneGeometry& g, uint32_t* bitmap, ZoneRegion& region);

// overlap[(c * capacity + k) * max_zones + z] for records k < total of classes c < num_classes:
// detection k's share inside zone z of its camera (cameras.camera[frame]); 0 for unused slots.
// packed / meta: the Tracker's [classes][capacity] packed masks and MaskMeta.
void zone_overlap_cpu(const ClassRecords& classes, int32_t num_classes, const uint32_t* packed, const MaskMeta* meta,
                      const FrameCameras& cameras, const FrameSizes& sizes, const ZoneRegion* regions,
                      const uint32_t* bitmaps, const ZoneGeometry& g, ZoneRule rule, float* overlap);

#if SEGPOST_WITH_CUDA
void zone_overlap_cuda(const ClassRecords& classes, int32_t num_classes, const uint32_t* packed, const MaskMeta* meta,
                       const FrameCameras& cameras, const FrameSizes& sizes, const ZoneRegion* regions,
                       const uint32_t* bitmaps, const ZoneGeometry& g, ZoneRule rule, float* overlap, void* stream);
#endif

}  // namespace segpost

// CPU twin of the zone kernel (zones.cu) and the zones' rasterisation: the math of zones.h, in loops.
#include "zones.h"

#include <algorithm>

namespace segpost {

void rasterise_zone(const ZonePoint* v, int n, const ZoneGeometry& g, uint32_t* bitmap, ZoneRegion& region) {
  std::fill(bitmap, bitmap + g.mask_words, 0u);
  region = ZoneRegion{};
  region.vertices = n;
  std::copy(v, v + n, region.v);
  MaskMeta m{0, 0, 0, 0, 0};
  for (int y = 0; y < g.mask_h; ++y) {
    const double cy = cell_centre(y, g.mask_h);
    for (int w = 0; w < g.words; ++w) {
      uint32_t word = 0;
      for (int b = 0; b < 32 && 32 * w + b < g.mask_w; ++b) {
        if (point_in_polygon(v, n, cell_centre(32 * w + b, g.mask_w), cy)) word |= 1u << b;
      }
      bitmap[y * g.words + w] = word;
      add_word(m, word, y, w);
    }
  }
  region.x0 = m.x0, region.y0 = m.y0, region.x1 = m.x1, region.y1 = m.y1;
}

void zone_overlap_cpu(const ClassRecords& classes, int32_t num_classes, const uint32_t* packed, const MaskMeta* meta,
                      const FrameCameras& cameras, const FrameSizes& sizes, const ZoneRegion* regions,
                      const uint32_t* bitmaps, const ZoneGeometry& g, ZoneRule rule, float* overlap) {
  for (int32_t c = 0; c < num_classes; ++c) {
    const Records& r = classes.records[c];
    for (int32_t k = 0; k < r.header->total; ++k) {
      const int64_t det = static_cast<int64_t>(c) * g.capacity + k;
      const int32_t frame = r.frame[k];
      const int64_t first = static_cast<int64_t>(cameras.camera[frame]) * g.max_zones;
      for (int z = 0; z < g.max_zones; ++z) {
        const ZoneRegion& region = regions[first + z];
        float value = 0.0f;
        if (region.vertices == 0) {
          value = 0.0f;
        } else if (rule == ZoneRule::BottomCentre) {
          value = bottom_centre_inside(region, r.box + 4 * k, sizes.width[frame], sizes.height[frame]) ? 1.0f : 0.0f;
        } else {
          const Rect both = intersect(meta_rect(meta[det]), zone_rect(region));
          if (!rect_empty(both)) {
            value = zone_share(zone_intersection_part(packed + det * g.mask_words,
                                                      bitmaps + (first + z) * g.mask_words, g.words, both, 0, 1),
                               meta[det].count);
          }
        }
        overlap[det * g.max_zones + z] = value;
      }
    }
  }
}

}  // namespace segpost
